"""dmconf's hooks for device.py: `hook.py perform <device> <json>` hands
the device a request and prints its answer; `hook.py offline <device>
<json>` sends it away for {"seconds": N} and prints its answer once it is
disconnected; `hook.py received <device>` prints what the device last
received."""

import json
import os
import sys
import tempfile
import time

kind, device = sys.argv[1], sys.argv[2]
spool = os.path.join(tempfile.gettempdir(), device)
if kind in ("perform", "offline"):
    answer = f"{spool}.{kind}.answer.json"
    if os.path.exists(answer):
        os.remove(answer)
    with open(f"{spool}.{kind}.json.tmp", "w") as f:
        f.write(sys.argv[3])
    os.rename(f"{spool}.{kind}.json.tmp", f"{spool}.{kind}.json")
    for _ in range(200):
        if os.path.exists(answer):
            print(open(answer).read())
            sys.exit(0)
        time.sleep(0.05)
    sys.exit("the device did not answer within 10 s")
try:
    print(open(f"{spool}.received.json").read())
except FileNotFoundError:
    print(json.dumps({"count": 0}))
