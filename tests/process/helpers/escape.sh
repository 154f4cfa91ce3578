#!/bin/sh
# Exits 0 at once, leaving behind a grandchild that left the process group with setsid and still
# holds the output pipe. Writes that grandchild's pid to the file named by $1.
setsid sh -c 'echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; exec sleep 1000' escaped "$1" &
while [ ! -s "$1" ]; do sleep 0.01; done
echo done
