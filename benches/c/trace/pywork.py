"""The python3 workload of the allocation traces (benches/c/trace/record.sh):
JSON dump and load, regex searches and a Counter over N generated records,
ROUNDS times. Run with PYTHONMALLOC=malloc so every object goes to malloc.
    python3 pywork.py N ROUNDS
"""
import collections
import json
import re
import sys


def main(n: int, rounds: int) -> int:
    docs = [{"id": i, "name": "item-%d" % i, "tags": ["t%d" % (i % 7), "x" * (i % 13)],
             "nested": {"a": [i, i * 2, str(i)], "b": None}} for i in range(n)]
    total = 0
    for _ in range(rounds):
        text = json.dumps(docs)
        back = json.loads(text)
        words = collections.Counter(re.findall(r"item-(\d*7)\b", text))
        total += len(back) + len(words) + sum(len(m) for m in re.findall(r'"t[0-6]"', text))
    print(total)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
