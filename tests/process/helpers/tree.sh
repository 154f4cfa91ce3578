#!/bin/sh
# A stubborn tool: ignores SIGTERM, hangs, and leaves a background child plus a grandchild that
# escaped the process group with setsid. Appends every pid to the file named by $1, then prints
# "ready" and hangs.
trap '' TERM
pidfile=$1
sleep 1000 &
echo $! >> "$pidfile"
setsid sh -c 'echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; exec sleep 1000' escaped "$pidfile.escaped" &
while [ ! -s "$pidfile.escaped" ]; do sleep 0.01; done
cat "$pidfile.escaped" >> "$pidfile"
echo $$ >> "$pidfile"
echo ready
while :; do sleep 1; done
