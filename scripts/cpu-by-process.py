#!/usr/bin/env python3
"""CPU seconds per kind of process (postgres, nats, orchestrator, workers,
bench client) while it runs: every 0.5 s it reads utime+stime of each process
from /proc (processes alive at start count from then, later ones from zero)
and prints the totals when stopped with SIGTERM or SIGINT. Used around one
`upshift bench engine` run:
    scripts/cpu-by-process.py > cpu.txt & S=$!; upshift bench engine ...; kill $S; wait $S; cat cpu.txt
"""
import os, signal, sys, time
hz = os.sysconf('SC_CLK_TCK')
base, last, kind = {}, {}, {}
def classify(pid):
    try:
        cmd = open(f'/proc/{pid}/cmdline','rb').read().replace(b'\0', b' ').decode(errors='replace')
    except OSError:
        return None
    if cmd.startswith('postgres') or '/postgres' in cmd.split(' ')[0]: return 'postgres'
    if 'nats-server' in cmd: return 'nats'
    if ' orchestrator' in cmd and 'upshift' in cmd: return 'orchestrator'
    if ' worker' in cmd and 'upshift' in cmd: return 'workers'
    if 'upshift' in cmd and 'bench' in cmd: return 'bench-client'
    return None
def sample(first=False):
    for d in os.listdir('/proc'):
        if not d.isdigit(): continue
        pid = int(d)
        try:
            f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        t = (int(f[11]) + int(f[12])) / hz
        if pid not in kind:
            k = classify(pid)
            kind[pid] = k
            if k is None: continue
            base[pid] = t if first else 0.0
        if kind[pid] is None: continue
        last[pid] = t
done = False
def stop(*_):
    global done; done = True
signal.signal(signal.SIGTERM, stop); signal.signal(signal.SIGINT, stop)
sample(True)
while not done:
    time.sleep(0.5); sample()
tot = {}
for pid, t in last.items():
    tot[kind[pid]] = tot.get(kind[pid], 0) + t - base.get(pid, 0)
print(' '.join(f'{k}={v:.1f}s' for k, v in sorted(tot.items())), flush=True)
