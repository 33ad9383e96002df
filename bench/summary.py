"""bench/summary.py RUN.json STDERR EXIT: one line from a scale run's merged
JSON and /usr/bin/time -v's output (in STDERR): verdict, users, connections,
deliveries, CPU-seconds per 1,000 publishes, the largest process's peak RSS."""
import json, re, sys
j = json.load(open(sys.argv[1])); t = open(sys.argv[2]).read()
cpu = float(re.search(r'User time \(seconds\): ([\d.]+)', t)[1]) + float(re.search(r'System time \(seconds\): ([\d.]+)', t)[1])
rss = int(re.search(r'Maximum resident set size \(kbytes\): (\d+)', t)[1])
c, u = j['counts'], j.get('users', {})
msgs = c.get('publish_ok', 0)
print(f"scale: exit {sys.argv[3]} verdict {j['verdict']} ({j.get('reason','')}); users target {u.get('target')} peak {u.get('peak')} reached after {u.get('reached_after_s')} s; "
      f"connections {u.get('connections')} sessions {u.get('sessions')}; publish ok {msgs}, expected {c.get('expected')}, lost {c.get('lost')}, duplicates {c.get('duplicates')}; "
      f"CPU {cpu:.1f} s = {cpu / max(msgs, 1) * 1000:.3f} CPU-s per 1,000 publishes; largest process RSS {rss // 1024} MB")
