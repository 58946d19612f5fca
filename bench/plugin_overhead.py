#!/usr/bin/env python3
"""Plugin overhead (issue 3): SMTP acceptance with no plugin, the no-op
`template` (rcpt-to), `content_filter` with its header rules only (data; the
issue's "header filter") and with its built-in header and body rules,
interleaved, ROUNDS runs each; prints msgs/s and the server's CPU time per message (utime+stime of
`mailgate serve` from /proc over the SMTP phase only), which shared-machine
load disturbs far less than throughput.

Each round runs the configurations in a rotated order, after a `sync` and
a pause: a run leaves work behind (the deleted store's blocks, dirty pages
being written back) that slowed whichever configuration came next by a few
per cent, always the same one before the order rotated.

    cargo build --release -p mailgate -p mailgate-bench && scripts/build-plugins
    python3 bench/plugin_overhead.py [BIN] [LABEL] [MESSAGES] [ROUNDS] [WASM_DIR]

WASM_DIR (default plugins/target/wasm32-wasip2/release) holds
template.wasm and content_filter.wasm, so two builds can be compared;
$MAILGATE_BENCH overrides the client binary.
"""
import os, shutil, statistics, subprocess, sys, tempfile, time
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WASM = sys.argv[5] if len(sys.argv) > 5 else os.path.join(ROOT, 'plugins/target/wasm32-wasip2/release')
BENCH = os.environ.get('MAILGATE_BENCH', os.path.join(ROOT, 'target/release/mailgate-bench'))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, 'target/release/mailgate')
LABEL = sys.argv[2] if len(sys.argv) > 2 else 'mailgate'
N = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
ROUNDS = int(sys.argv[4]) if len(sys.argv) > 4 else 3
TMP = tempfile.mkdtemp(prefix='plugin-overhead-')
DIRS = {'none': None, 'noop': 'template.wasm', 'header': 'content_filter.wasm',
        'filter': 'content_filter.wasm'}
# 'header': the content filter with its built-in header rules only (the
# issue's "header filter"); 'filter': its built-in header and body rules.
HEADER_RULES = """threshold = 5.0
rules = [
  { header = "Subject", contains = "viagra", score = 5.0 },
  { header = "Subject", contains = "you have won", score = 4.0 },
  { header = "Subject", contains = "!!!", score = 1.5 },
]
"""
for cfg, wasm in DIRS.items():
    if wasm:
        os.makedirs(os.path.join(TMP, cfg))
        shutil.copy(os.path.join(WASM, wasm), os.path.join(TMP, cfg, wasm))
        if cfg == 'header':
            with open(os.path.join(TMP, cfg, 'content_filter.config.toml'), 'w') as f:
                f.write(HEADER_RULES)
TCK = os.sysconf('SC_CLK_TCK')
def cpu(pid):
    f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return (int(f[11]) + int(f[12])) / TCK
def server_pid(bp):
    out = subprocess.run(['pgrep', '-P', str(bp)], capture_output=True, text=True).stdout.split()
    for p in out:
        try:
            if 'serve' in open(f'/proc/{p}/cmdline').read():
                return int(p)
        except OSError:
            pass
res = {}
order = list(DIRS)
for r in range(ROUNDS):
    for cfg in order[r % len(order):] + order[:r % len(order)]:
        os.sync()
        time.sleep(1)
        args = [BENCH, '--bin', BIN, '--messages', str(N), '--pop3-window', '0']
        if cfg != 'none':
            args += ['--plugins', os.path.join(TMP, cfg)]
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        c0 = c1 = None; pid = None
        for line in p.stderr:
            if 'SMTP phase' in line:
                pid = server_pid(p.pid); c0 = cpu(pid)
            elif 'POP3 RETR' in line and c1 is None and pid:
                c1 = cpu(pid)
        out = p.stdout.read(); p.wait()
        rate = float([l for l in out.splitlines() if 'smtp_accept_msgs_per_s' in l][0].split('=')[1])
        us = (c1 - c0) * 1e6 / N
        load = open('/proc/loadavg').read().split()[0]
        print(f'{LABEL} round={r+1} cfg={cfg} msgs/s={rate:.0f} server_cpu_us/msg={us:.0f} load={load}', flush=True)
        res.setdefault(cfg, []).append((rate, us))
for cfg, v in res.items():
    print(f'{LABEL} {cfg}: median msgs/s {statistics.median(x for x,_ in v):.0f} (min {min(x for x,_ in v):.0f} max {max(x for x,_ in v):.0f}), median server CPU {statistics.median(u for _,u in v):.0f} µs/msg')
# Ratios to no plugin, paired by round (the configurations of one round ran
# back to back, under the same load): msgs/s with/none, the figure,
# and server CPU per message none/with (what throughput would be with the
# server alone on the CPU).
TARGET = {'noop': 0.97, 'header': 0.90}
base = res['none']
for cfg, v in res.items():
    if cfg == 'none':
        continue
    cpu = [b[1] / w[1] for b, w in zip(base, v)]
    rate = [w[0] / b[0] for b, w in zip(base, v)]
    target = f' (target {TARGET[cfg]:.2f})' if cfg in TARGET else ''
    print(f'{LABEL} ratio {cfg}/none: throughput {statistics.median(rate):.3f}{target}, rounds {min(rate):.2f}-{max(rate):.2f}; '
          f'CPU-based {statistics.median(cpu):.3f}, rounds {min(cpu):.2f}-{max(cpu):.2f}')
shutil.rmtree(TMP)
