# One cycle of the embedded interpreter: a few stdlib modules, pure Python and C.
import array
import datetime
import decimal
import json
import re

doc = json.loads(json.dumps({"n": [1, 2, 3], "when": str(datetime.date(2026, 1, 1))}))
assert re.sub(r"\d", "#", doc["when"]) == "####-##-##"
assert decimal.Decimal("1.10") + decimal.Decimal("2.20") == decimal.Decimal("3.30")
assert sum(array.array("d", [0.5] * 8)) == 4.0
