#!/usr/bin/env python3
# Share of a Caddy CPU profile (from `go run ./bench -cpuprofile DIR`) spent in
# the module: a sample counts when, from the leaf up, a frame of caddy-conflict
# or ristretto comes before a frame of reverse_proxy or of the response
# writers (the upstream exchange and the network writes, which plain
# reverse_proxy does too).
#
#   python3 bench/share.py DIR/put-B.pprof
import subprocess, sys, re, collections
prof = sys.argv[1]
out = subprocess.run(['go', 'tool', 'pprof', '-traces', prof], capture_output=True, text=True).stdout
total = 0.0; mod = 0.0
tops = collections.Counter()
def val(s):
    m = re.match(r'([\d.]+)(ns|us|µs|ms|s)', s)
    if not m: return 0
    x = float(m.group(1)); u = m.group(2)
    return x * {'ns':1e-9,'us':1e-6,'µs':1e-6,'ms':1e-3,'s':1}[u]
for block in out.split('-----------+-------------------------------------------------------'):
    lines = [l for l in block.strip('\n').split('\n') if l.strip()]
    if not lines: continue
    first = lines[0].split()
    if not first or not re.match(r'[\d.]+(ns|us|µs|ms|s)$', first[0]): continue
    v = val(first[0])
    frames = [first[1]] + [l.strip() for l in lines[1:]]
    total += v
    hit = None
    for f in frames:
        if 'reverseproxy' in f or 'net/http.(*response)' in f or 'bufio.(*Writer)' in f or 'net/http.(*conn)' in f:
            break
        if 'caddy-conflict' in f or 'ristretto' in f:
            hit = f; break
    if hit:
        mod += v
        # attribute to the outermost module frame for a summary
        outer = [f for f in frames if 'caddy-conflict' in f or 'ristretto' in f]
        tops[outer[-1] if outer else hit] += v
print(f"total {total:.2f}s module {mod:.3f}s share {100*mod/total:.1f}%")
for k, v in tops.most_common(8):
    print(f"  {100*v/total:.2f}%  {k}")
