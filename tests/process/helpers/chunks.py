"""Write each argument to stdout as a separate flushed write, pausing between them.

An argument of the form ``@N`` writes N bytes of ``x`` instead.
"""

import sys
import time

for i, arg in enumerate(sys.argv[1:]):
    if i:
        time.sleep(0.05)
    data = b"x" * int(arg[1:]) if arg.startswith("@") else arg.encode()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
