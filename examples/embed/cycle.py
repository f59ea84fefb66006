# One cycle of the embedded interpreter: a few stdlib modules, pure Python and C.
# The host reads `result` after every cycle and checks that it never changes.
import array
import datetime
import decimal
import json
import re

doc = json.loads(json.dumps({"n": [1, 2, 3], "when": str(datetime.date(2026, 1, 1))}))
masked = re.sub(r"\d", "#", doc["when"])
total = decimal.Decimal("1.10") + decimal.Decimal("2.20")
floats = sum(array.array("d", [0.5] * 8))
assert masked == "####-##-##" and total == decimal.Decimal("3.30") and floats == 4.0
result = f"{doc['when']} {masked} {total} {floats} {doc['n']}"
