#!/usr/bin/env python3
"""One benchmark report: runs every benchmark in bench/ on this machine, with the peers measured
in the same run, and writes one Markdown file with tables and gnuplot figures.

    cmake --build build-release --target bench-report        # the full report (< 10 min)
    bench/report.py --build-dir build-release [--out DIR] [--quick] [--only a,b] [--skip a,b]
    bench/report.py --verify DIR/report.md                    # every section and figure there?

Each bench prints one or more `REPORT {json}` lines (bench/report_line.h): its table, its headline
figures against their targets, and where its raw samples are (under $CELLOS_BENCH_OUT, which this
driver sets to DIR/raw). A bench whose peer or tool is not installed is skipped and the report
says why; a bench that fails is reported with the tail of its output, and the driver exits 1 at
the end. --quick runs every bench with tiny counts: it tests the plumbing, its figures mean
nothing. Needs root (namespaces, cgroups, nft), like the benches themselves.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# The sections every report has, in order (--verify checks them).
SECTIONS = ["Machine", "Summary", "peers", "spawn", "cell", "nft", "net-run", "events", "flow-probes", "dns",
            "spec", "gvisor", "nested", "nats", "flows", "daemon", "throughput against concurrency"]
# Figures every report on a machine with the project's dependencies has (--verify checks them).
REQUIRED_FIGURES = ["spawn-latency.png", "throughput-concurrency.png", "admission-live-cells.png"]


def bench_table(b, out, quick):
    """Every bench: name, what it measures, command, the tools it needs, timeout (s), notes."""
    bin_ = lambda name: os.path.join(b, "bench", name)
    reactor = os.path.join(b, "cellos-reactor")
    q = quick
    raw = os.path.join(out, "raw")
    return [
        dict(name="spawn", what="one isolated `/bin/true` end to end: the kernel's floor, "
             "`cellos-reactor run`, bwrap (the peer), and `run --via-daemon` to a daemon with a warm pool "
             "(pooled) and without (dcold), interleaved",
             cmd=[bin_("spawn_bench"), "--reactor", reactor, "-n", "10" if q else "500",
                  "--warmup", "2" if q else "20", "--csv", os.path.join(raw, "spawn.csv")],
             target="bench-spawn", needs=[], timeout=120 if q else 600),
        dict(name="cell", what="one cell inside a running reactor (no process start-up) against "
             "the floor, in one process",
             cmd=[bin_("cell_bench"), "-n", "10" if q else "500", "--warmup", "2" if q else "20",
                  "--csv", os.path.join(raw, "cell.csv")],
             target="bench-cell", needs=[], timeout=120 if q else 600),
        dict(name="nft", what="a cell's ruleset: libnftnl batch vs `nft -f` (the peer) at 1, 20 "
             "and 200 rules; cell setup with and without egress",
             cmd=[bin_("nft_bench"), "-n", "5" if q else "100", "--nft-n", "3" if q else "20",
                  "--cells", "5" if q else "100", "--csv", os.path.join(raw, "nft.csv")],
             target="bench-nft", needs=["nft"], timeout=120 if q else 600),
        dict(name="net-run", what="`cellos-reactor run` of a cell with one egress rule against "
             "one without, interleaved (wall and CPU time)",
             cmd=[bin_("net_run_bench"), "--reactor", reactor, "-n", "5" if q else "100",
                  "--csv", os.path.join(raw, "net_run.csv")],
             target="bench-net-run", needs=["nft"], timeout=120 if q else 600),
        dict(name="events", what="event-log throughput (unsigned, batch-signed, per-event DSSE) "
             "against `openssl speed ed25519` in the same run",
             cmd=[bin_("event_bench"), "-n", "20000" if q else "1000000",
                  "--dsse-n", "1000" if q else "50000", "--repeat", "1" if q else "3",
                  "--dir", "/var/tmp", "--csv", os.path.join(raw, "events.csv")],
             target="bench-events", needs=["openssl"], timeout=120 if q else 600),
        dict(name="flow-probes", what="the eBPF flow probes' cost per packet per hook, detached vs "
             "attached",
             cmd=[bin_("flow_probe_bench"), "-n", "2000" if q else "100000", "-r", "3" if q else "9"],
             target="bench-flow-probes", needs=[], timeout=120 if q else 600),
        dict(name="dns", what="the per-cell DNS proxy: added latency against dnsmasq directly, "
             "queries/s for 100 proxies on one ring",
             cmd=[bin_("dns_bench"), "-n", "50" if q else "2000", "--seconds", "0.3" if q else "3"],
             target="bench-dns", needs=["/usr/sbin/dnsmasq"], timeout=120 if q else 600),
        dict(name="spec", what="refusal time of hostile 1 MiB specs against the 20 ms target",
             cmd=[bin_("spec_bench"), "-n", "2" if q else "20"],
             target="bench-spec", needs=[], timeout=120 if q else 600),
        dict(name="gvisor", what="gVisor cells against native ones and against runsc (the peer) "
             "driving the same bundle",
             cmd=[bin_("gvisor_bench"), "-n", "2" if q else "20", "--warmup", "1" if q else "3",
                  "--parallel", "2" if q else "8", "--csv", os.path.join(raw, "gvisor.csv")],
             target="bench-gvisor", needs=["runsc"], timeout=180 if q else 600,
             note=None if q else "n=20 here (bench-gvisor runs 40): a runsc start is ~0.25 s"),
        dict(name="nested", what="a nested cell (`spec.run.backend: \"nested\"`) against a native "
             "cell of the same reactor, and a nested cell whose command runs an inner `run` (a cell "
             "at depth 1, the nested reactor's start included), interleaved",
             cmd=[bin_("nested_bench"), "-n", "3" if q else "20", "--warmup", "1" if q else "2",
                  "--csv", os.path.join(raw, "nested.csv")],
             target="bench-nested", needs=[], timeout=180 if q else 600),
        dict(name="nats", what="specs/s through NATS JetStream to 3 daemons vs the spool on one; "
             "event batches/s published",
             cmd=[bin_("nats_bench"), "--reactor", reactor, "--specs", "20" if q else "1000",
                  "--slots", "8", "--publish-events", "2000" if q else "200000"],
             target="bench-nats", needs=["nats-server"], timeout=180 if q else 600),
        dict(name="flows", what="per-flow enforcement: N cells streaming TCP and paced UDP through "
             "the NAT uplink, per enforcement mode x probes",
             cmd=[bin_("flow_bench"), "--reactor", reactor, "--out", os.path.join(out, "flows"),
                  "--cells", "1" if q else "4", "--conns", "10" if q else "500",
                  "--bytes", "4096" if q else "65536", "--udp-packets", "1000" if q else "1000000",
                  "--udp-pps", "10000" if q else "500000", "--repeat", "1"]
             + (["--modes", "none,nft", "--probes", "off"] if q else []),
             target="bench-flows", needs=[], timeout=240 if q else 600,
             note=None if q else "--repeat 1 here (bench-flows runs 3): one run per mode x probes"),
        dict(name="daemon", what="the fleet daemon: spool throughput vs bwrap `xargs -P2`, "
             "reactor syscalls per cell, density (RSS, CPU, admission) with live sleepers",
             cmd=[bin_("daemon_bench"), "--reactor", reactor, "--cells", "20" if q else "2000",
                  "--sleepers", "50" if q else "5000", "--syscall-cells", "20" if q else "500"],
             target="bench-daemon", needs=["bwrap", "perf"], timeout=240 if q else 900),
    ]


# ---------------------------------------------------------------------------------------------
# Running things

def have(tool):
    return os.access(tool, os.X_OK) if tool.startswith("/") else shutil.which(tool) is not None


def sh(cmd, timeout=30):
    """Output of a short informational command, or "" (never fails the report)."""
    try:
        r = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True,
                           timeout=timeout)
        return (r.stdout or r.stderr).strip()
    except Exception:
        return ""


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_bench(spec, logdir, env):
    """Runs one bench in its own process group; returns a result dict."""
    res = dict(name=spec["name"], cmd=spec["cmd"], reports=[], status="ok", reason="", rc=0,
               seconds=0.0, log=os.path.join(logdir, spec["name"] + ".log"))
    missing = [t for t in spec["needs"] if not have(t)]
    if missing:
        res.update(status="skipped", reason="not installed: " + ", ".join(missing))
        return res
    print(f"report: {spec['name']}: {' '.join(spec['cmd'])}", flush=True)
    t0 = time.monotonic()
    with open(res["log"], "w") as log:
        p = subprocess.Popen(spec["cmd"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, text=True, env=env, start_new_session=True,
                             cwd=os.path.dirname(os.path.dirname(spec["cmd"][0])))
        timed_out = False
        try:
            out, _ = p.communicate(timeout=spec["timeout"])
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(p.pid, signal.SIGTERM)  # the bench's own group: it cleans up on SIGTERM
            try:
                out, _ = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                out, _ = p.communicate()
        log.write(out)
    res["seconds"] = time.monotonic() - t0
    res["rc"] = p.returncode
    for line in out.splitlines():
        if line.startswith("REPORT "):
            try:
                res["reports"].append(json.loads(line[len("REPORT "):]))
            except json.JSONDecodeError as e:
                res.update(status="failed", reason=f"unparsable REPORT line: {e}")
    res["tail"] = "\n".join(out.splitlines()[-15:])
    missed = any(m.get("met") is False for r in res["reports"] for m in r.get("metrics", []))
    if timed_out:
        res.update(status="failed", reason=f"timed out after {spec['timeout']} s")
    elif res["status"] == "failed":
        pass
    elif not res["reports"]:
        res.update(status="failed", reason=f"exit status {p.returncode}, no REPORT line")
    elif p.returncode != 0 and not missed:
        res.update(status="failed", reason=f"exit status {p.returncode}")
    elif p.returncode != 0:
        res["reason"] = f"exit status {p.returncode}: a target was missed (the bench says so)"
    print(f"report: {spec['name']}: {res['status']} in {res['seconds']:.1f} s "
          f"{res['reason']}", flush=True)
    return res


def openssl_peer(quick):
    """The hashing and signing ceilings of this machine: `openssl speed` in the same run."""
    rows = []
    for alg, extra in (("sha256", ["-bytes", "384"]), ("ed25519", [])):
        cmd = ["openssl", "speed", "-mr", "-seconds", "1"] + extra + [alg]
        out = sh(cmd, timeout=60)
        if alg == "sha256":
            # +F:<n>:sha256:<bytes/s for each size>
            m = re.search(r"^\+F:\d+:sha256:([\d.]+)", out, re.M)
            if m:
                bps = float(m.group(1))
                rows.append(("openssl speed sha256, 384-byte blocks (one event line)",
                             f"{bps / 1e6:.0f} MB/s = {bps / 384 / 1e6:.2f} M hashes/s",
                             " ".join(cmd)))
        else:
            # +F6:<n>:<bits>:Ed25519:<sign/s>:<verify/s>
            m = re.search(r"^\+F6:\d+:\d+:\w+:([\d.]+):([\d.]+)", out, re.M)
            if m:
                rows.append(("openssl speed ed25519", f"{float(m.group(1)):,.0f} sign/s, "
                             f"{float(m.group(2)):,.0f} verify/s", " ".join(cmd)))
        if not out:
            rows.append((f"openssl speed {alg}", "not run (openssl missing or failed)", " ".join(cmd)))
    return rows


class Sweep:
    """Throughput against concurrency: N /bin/true cells through a fleet daemon with
    max_concurrent_cells = K, against `xargs -P K bwrap ...` with the same N, for each K."""

    def __init__(self, reactor, levels, n):
        self.reactor, self.levels, self.n = reactor, levels, n

    def daemon_rate(self, k):
        d = tempfile.mkdtemp(prefix="cellos-report-sweep-", dir="/var/tmp")
        host = f"report-sweep-{os.getpid()}-{k}"
        proc = None
        try:
            os.makedirs(f"{d}/state/spool")
            os.makedirs(f"{d}/staging")
            with open(f"{d}/fleet.toml", "w") as f:
                f.write(f'[host]\nid = "{host}"\nstate_dir = "{d}/state"\n'
                        f"max_concurrent_cells = {k}\nshutdown_grace_seconds = 0\n")
            names = []
            for i in range(self.n):
                name = f"{i:08d}-w.json"
                with open(f"{d}/staging/{name}", "w") as f:
                    f.write('{"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":'
                            f'{{"id":"w-{k}-{i}","run":{{"argv":["/bin/true"]}}}}}}')
                names.append(name)
            err = open(f"{d}/daemon.err", "w")
            proc = subprocess.Popen([self.reactor, "--config", f"{d}/fleet.toml"],
                                    stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
            for _ in range(400):
                if os.path.exists(f"{d}/state/reactor.sock") or proc.poll() is not None:
                    break
                time.sleep(0.025)
            if not os.path.exists(f"{d}/state/reactor.sock"):
                raise RuntimeError("daemon did not start: " + open(f"{d}/daemon.err").read()[-300:])
            events, done, off = f"{d}/state/events.jsonl", 0, 0
            t0 = time.monotonic()
            for name in names:
                os.rename(f"{d}/staging/{name}", f"{d}/state/spool/{name}")
            while done < self.n:
                if time.monotonic() - t0 > 300:
                    raise RuntimeError(f"timed out: {done} of {self.n} cells destroyed")
                if os.path.exists(events):
                    with open(events, "rb") as f:
                        f.seek(off)
                        chunk = f.read()
                    cut = chunk.rfind(b"\n") + 1
                    off += cut
                    done += chunk[:cut].count(b'lifecycle.v1.destroyed"')
                time.sleep(0.005)
            return self.n / (time.monotonic() - t0)
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            shutil.rmtree(d, ignore_errors=True)
            for h in ("unified", "memory", "pids", "cpu"):
                for p in (f"/sys/fs/cgroup/{h}/cellos/{host}", f"/sys/fs/cgroup/{h}/cellos"):
                    try:
                        os.rmdir(p)
                    except OSError:
                        pass

    def bwrap_rate(self, k):
        cmd = (f"seq {self.n} | xargs -P{k} -I{{}} bwrap --unshare-all --die-with-parent "
               "--ro-bind / / --tmpfs /tmp /bin/true")
        t0 = time.monotonic()
        r = subprocess.run(["/bin/sh", "-c", cmd], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"bwrap peer: exit {r.returncode}: {r.stderr[-200:]}")
        return self.n / (time.monotonic() - t0)

    def run(self):
        res = dict(name="throughput against concurrency", status="ok", reason="", rows=[],
                   seconds=0.0)
        t0 = time.monotonic()
        print(f"report: sweep: {self.n} cells per level, levels {self.levels}", flush=True)
        try:
            for k in self.levels:
                r = self.daemon_rate(k)
                b = self.bwrap_rate(k) if have("bwrap") else None
                res["rows"].append((k, r, b))
                print(f"report: sweep: K={k} reactor {r:.0f} cells/s, bwrap "
                      f"{'-' if b is None else f'{b:.0f}'} cells/s", flush=True)
        except Exception as e:  # reported as a failed section; the rows done so far stay
            res.update(status="failed", reason=str(e))
        if not have("bwrap"):
            res["reason"] = (res["reason"] + "; " if res["reason"] else "") + \
                "bwrap not installed: its series skipped"
        res["seconds"] = time.monotonic() - t0
        return res


# ---------------------------------------------------------------------------------------------
# Figures (gnuplot)

class Plots:
    def __init__(self, figdir):
        self.dir = figdir
        self.ok = have("gnuplot")
        cairo = "pngcairo" in sh("gnuplot -e 'set terminal' 2>&1")
        self.term = "pngcairo size 900,520 font ',10'" if cairo else "png size 900,520"
        self.errors = []

    def plot(self, name, script):
        """Writes <name>.gp and runs it; returns the PNG's file name or None."""
        if not self.ok:
            self.errors.append(f"{name}: gnuplot not installed (apt-get install gnuplot-nox)")
            return None
        png = os.path.join(self.dir, name + ".png")
        gp = os.path.join(self.dir, name + ".gp")
        with open(gp, "w") as f:
            f.write(f"set terminal {self.term} noenhanced\nset output '{png}'\nset grid\nset key bottom right\n")
            f.write(script)
        r = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(png) or os.path.getsize(png) == 0:
            self.errors.append(f"{name}: gnuplot failed: {r.stderr.strip()[-200:]}")
            return None
        return name + ".png"

    def cdf(self, name, title, xlabel, series, logx=False):
        """series: {label: [values]}: one empirical CDF per label."""
        series = {k: sorted(v) for k, v in series.items() if v}
        if not series:
            return None
        plots = []
        for i, (label, vals) in enumerate(series.items()):
            dat = os.path.join(self.dir, f"{name}.{i}.dat")
            with open(dat, "w") as f:
                for j, x in enumerate(vals):
                    f.write(f"{x} {(j + 1) / len(vals)}\n")
            plots.append(f"'{dat}' using 1:2 with steps lw 2 title '{label} (n={len(vals)})'")
        return self.plot(name, (f"set logscale x\n" if logx else "") +
                         f"set title \"{title}\"\nset xlabel '{xlabel}'\n"
                         "set ylabel 'fraction of runs at or below'\nset yrange [0:1]\n"
                         "plot " + ", ".join(plots) + "\n")


def read_csv_series(path, value_col):
    """row/tool,iteration,value CSV -> {row: [values]}."""
    series = {}
    try:
        with open(path) as f:
            next(f)
            for line in f:
                parts = line.strip().split(",")
                if len(parts) > value_col:
                    series.setdefault(parts[0], []).append(float(parts[value_col]))
    except (OSError, StopIteration, ValueError):
        return {}
    return series


def admission_curve(path, buckets=20):
    """From the started events of the density run: (live cells, admission cells/s) points."""
    times = []
    try:
        with open(path) as f:
            for line in f:
                t = json.loads(line).get("time", "")
                m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", t)
                if m:
                    base = datetime.datetime.fromisoformat(m.group(1)).replace(
                        tzinfo=datetime.timezone.utc).timestamp()
                    times.append(base + float(m.group(2) or 0))
    except (OSError, json.JSONDecodeError):
        return []
    times.sort()
    n = len(times)
    if n < 4:
        return []
    w = max(2, n // buckets)
    pts = []
    for i in range(0, n - w + 1, w):
        dt = times[i + w - 1] - times[i]
        if dt > 0:
            pts.append((i + w / 2, (w - 1) / dt))
    return pts


# ---------------------------------------------------------------------------------------------
# The Markdown

def fmt(v):
    if v is None:
        return "?"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        a = abs(v)
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 100 or float(v).is_integer():
            return f"{v:.0f}" if float(v).is_integer() or a >= 100 else f"{v:.1f}"
        if a >= 1:
            return f"{v:.2f}"
        return f"{v:.3g}"
    return str(v).replace("|", "\\|")


def md_table(rows):
    """rows: list of dicts with "name" first. Consecutive rows with the same columns make one
    table (a bench may report two kinds of row: nft's installs and its cells)."""
    groups = []
    for r in rows:
        if groups and list(groups[-1][-1].keys()) == list(r.keys()):
            groups[-1].append(r)
        else:
            groups.append([r])
    return "\n\n".join(md_one_table(g) for g in groups)


def md_one_table(rows):
    cols = []
    for r in rows:
        for k in r:
            if k != "name" and k not in cols:
                cols.append(k)
    out = ["| | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    for r in rows:
        out.append(f"| {fmt(r.get('name'))} | " + " | ".join(fmt(r.get(c)) for c in cols) + " |")
    return "\n".join(out)


def md_metrics(metrics):
    out = ["| figure | value | target | met |", "| --- | ---: | --- | --- |"]
    for m in metrics:
        met = m.get("met")
        out.append(f"| {fmt(m['name'])} | {fmt(m.get('value'))} {m.get('unit', '')} | "
                   f"{m.get('target', '')} | "
                   f"{'' if met is None else ('**met**' if met else '**missed**')} |")
    return "\n".join(out)


def machine_info():
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    cg = "unified (v2)" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "hybrid/v1"
    return dict(nproc=os.cpu_count(), model=cpu, kernel=platform.release(), memory=mem,
                cgroups=cg, hostname=platform.node())


def write_report(path, args, machine, start, end, load0, load1, peers, results, sweep, figs,
                 plot_errors, total_s):
    L = []
    w = L.append
    w("# cellos-reactor benchmark report\n")
    w(f"{'**QUICK MODE** (tiny counts: tests the plumbing; these figures mean nothing). ' if args.quick else ''}"
      f"Written by `bench/report.py` (`cmake --build {args.build_rel} --target bench-report`), "
      f"{total_s / 60:.1f} min in all.\n")
    w("## Machine\n")
    w("| | |\n| --- | --- |")
    w(f"| date (UTC) | {start} → {end} |")
    w(f"| host | {machine['hostname']} |")
    w(f"| CPUs (nproc) | {machine['nproc']} |")
    w(f"| model | {machine['model']} |")
    w(f"| kernel | {machine['kernel']} |")
    w(f"| memory | {machine['memory']} |")
    w(f"| cgroups | {machine['cgroups']} |")
    w(f"| load average at start | {load0} |")
    w(f"| load average at end | {load1} |")
    w(f"| source | {args.commit} |")
    w(f"| build | {args.build_type} ({args.build_dir}) |\n")
    w("The load averages above say how busy the machine was: anything else running inflates "
      "absolute times, and the tails most, so ratios against a peer measured in the same run "
      "(interleaved where the bench does so) are the figures to judge. The load at the end "
      "includes the report's own last benches (the daemon's thousands of cells, the concurrency "
      "sweep). The benches run one after another, never two at once.\n")

    w("## Summary\n")
    w("| bench | status | time | headline figures (target) |\n| --- | --- | ---: | --- |")
    for r in results:
        heads = []
        for rep in r.get("reports", []):
            for m in rep.get("metrics", []):
                if m.get("target") and m.get("met") is not None:
                    heads.append(f"{m['name']} {fmt(m.get('value'))} {m.get('unit', '')} "
                                 f"({m['target']}: {'met' if m['met'] else 'MISSED'})")
        status = r["status"] + (f": {r['reason']}" if r["reason"] else "")
        w(f"| [{r['name']}](#{r['name']}) | {fmt(status)} | {r['seconds']:.0f} s | "
          f"{fmt('; '.join(heads)) or '—'} |")
    w(f"| [throughput against concurrency](#throughput-against-concurrency) | "
      f"{fmt(sweep['status'] + (': ' + sweep['reason'] if sweep['reason'] else ''))} | "
      f"{sweep['seconds']:.0f} s | — |\n")
    if plot_errors:
        w("Figures not drawn: " + "; ".join(plot_errors) + "\n")

    w("## peers\n")
    w("Peers measured in this run (the benches run bwrap, runsc and `nft -f` themselves; their "
      "rows are in each section). Versions and this machine's hashing and signing ceilings:\n")
    w("| peer | figure or version | command |\n| --- | --- | --- |")
    for name, val, cmd in peers:
        w(f"| {fmt(name)} | {fmt(val)} | `{cmd}` |")
    w("")

    specs = {s["name"]: s for s in args.specs}
    for r in results:
        s = specs[r["name"]]
        w(f"## {r['name']}\n")
        w(f"{s['what']}. `cmake --build {args.build_rel} --target {s['target']}` runs it with its "
          "own defaults; this report ran:\n")
        w("```\n" + " ".join(r["cmd"]) + "\n```\n")
        if s.get("note"):
            w(f"**Note:** {s['note']}.\n")
        if r["status"] == "skipped":
            w(f"**Skipped**: {r['reason']}.\n")
            continue
        w(f"Status: **{r['status']}**{(' — ' + r['reason']) if r['reason'] else ''}; "
          f"{r['seconds']:.1f} s; full output: [{os.path.relpath(r['log'], os.path.dirname(path))}]"
          f"({os.path.relpath(r['log'], os.path.dirname(path))}).\n")
        if r["status"] == "failed":
            w("Last lines of its output:\n\n```\n" + r.get("tail", "") + "\n```\n")
        for rep in r["reports"]:
            if rep.get("part"):
                w(f"### {r['name']}: {rep['part']}\n")
            if rep.get("rows"):
                w(md_table(rep["rows"]) + "\n")
            if rep.get("metrics"):
                w(md_metrics(rep["metrics"]) + "\n")
            if rep.get("summary") and os.path.exists(rep["summary"]):
                with open(rep["summary"]) as f:
                    text = f.read()
                # The bench's own summary, its headings demoted under this section.
                text = re.sub(r"^# .*\n", "", text)
                text = re.sub(r"^## ", "#### ", text, flags=re.M)
                w(text.strip() + "\n")
            if rep.get("reproduce"):
                w(f"reproduce: `{rep['reproduce']}`\n")
        for fig, caption in figs.get(r["name"], []):
            w(f"![{caption}](figures/{fig})\n")

    w("## throughput against concurrency\n")
    w(f"{args.sweep_n} `/bin/true` cells renamed into the spool of one fleet daemon at once, with "
      "`max_concurrent_cells` = K, until the last `destroyed` event; against the peer "
      f"`seq {args.sweep_n} | xargs -PK -I{{}} bwrap --unshare-all --die-with-parent --ro-bind / / "
      "--tmpfs /tmp /bin/true`, for each K. Driven by `bench/report.py` itself (a daemon per K, "
      "state under /var/tmp, removed after).\n")
    if sweep["status"] != "ok":
        w(f"Status: **{sweep['status']}** — {sweep['reason']}\n")
    elif sweep["reason"]:
        w(f"{sweep['reason']}\n")
    if sweep["rows"]:
        w("| K | reactor cells/s | bwrap cells/s | reactor / bwrap |\n| ---: | ---: | ---: | ---: |")
        for k, rr, b in sweep["rows"]:
            w(f"| {k} | {fmt(rr)} | {fmt(b)} | {fmt(rr / b) if b else '?'} |")
        w("")
    for fig, caption in figs.get("sweep", []):
        w(f"![{caption}](figures/{fig})\n")

    w("## Reproduce\n")
    w(f"```\ncmake --build {args.build_rel} --target bench-report\n# which runs:\n"
      f"{' '.join(args.argv)}\n```\n")
    with open(path, "w") as f:
        f.write("\n".join(L))


# ---------------------------------------------------------------------------------------------

def verify(path):
    """Exit 0 when the report has every section and every figure it names exists."""
    problems = []
    try:
        text = open(path).read()
    except OSError as e:
        print(f"report: cannot read {path}: {e}")
        return 1
    heads = set(re.findall(r"^## (.+)$", text, re.M))
    for s in SECTIONS:
        if s not in heads:
            problems.append(f"section missing: ## {s}")
    base = os.path.dirname(path)
    figs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    for fig in figs:
        p = os.path.join(base, fig)
        if not os.path.exists(p) or os.path.getsize(p) == 0:
            problems.append(f"figure named but missing or empty: {fig}")
            continue
        with open(p, "rb") as f:
            head = f.read(8)
        if not (head.startswith(b"\x89PNG") or b"<svg" in open(p, "rb").read(4096)):
            problems.append(f"figure is neither PNG nor SVG: {fig}")
    for req in REQUIRED_FIGURES:
        if not any(f.endswith("/" + req) for f in figs):
            problems.append(f"required figure not in the report: {req}")
    for line in text.splitlines():
        if line.startswith("| ") and "| failed" in line:
            problems.append("a bench failed: " + line)
    for p in problems:
        print("report: " + p)
    print(f"report: {path}: {len(heads)} sections, {len(figs)} figures, "
          f"{'OK' if not problems else str(len(problems)) + ' problem(s)'}")
    return 1 if problems else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", help="the build tree holding cellos-reactor and bench/")
    ap.add_argument("--source-dir", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--out", help="output directory (default BUILD/bench-report)")
    ap.add_argument("--quick", action="store_true", help="tiny counts: tests the plumbing only")
    ap.add_argument("--only", help="comma-separated bench names to run (others are listed as skipped)")
    ap.add_argument("--skip", help="comma-separated bench names not to run")
    ap.add_argument("--verify", metavar="REPORT_MD", help="check a report and exit")
    args = ap.parse_args()
    if args.verify:
        return verify(args.verify)
    if not args.build_dir:
        ap.error("--build-dir is required")
    if os.geteuid() != 0:
        print("report: needs root (the benches create namespaces, cgroups and nft tables)")
        return 2
    args.argv = [os.path.abspath(sys.argv[0])] + sys.argv[1:]
    args.build_dir = os.path.abspath(args.build_dir)
    args.build_rel = os.path.relpath(args.build_dir, args.source_dir)
    if args.build_rel.startswith(".."):
        args.build_rel = args.build_dir
    out = os.path.abspath(args.out or os.path.join(args.build_dir, "bench-report"))
    for sub in ("raw", "logs", "figures"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
        os.makedirs(os.path.join(out, sub))
    shutil.rmtree(os.path.join(out, "flows"), ignore_errors=True)
    args.commit = sh(["git", "-C", args.source_dir, "log", "-1", "--format=%h %cd %s",
                      "--date=format:%Y-%m-%d %H:%M"])[:120] or "?"
    cache = os.path.join(args.build_dir, "CMakeCache.txt")
    m = re.search(r"^CMAKE_BUILD_TYPE:\w+=(\w*)", open(cache).read(), re.M) if os.path.exists(cache) else None
    args.build_type = m.group(1) if m and m.group(1) else "?"
    args.specs = bench_table(args.build_dir, out, args.quick)
    only = set(args.only.split(",")) if args.only else None
    skip = set(args.skip.split(",")) if args.skip else set()

    t_start = time.monotonic()
    start = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    load0 = loadavg()
    machine = machine_info()
    env = dict(os.environ, CELLOS_BENCH_OUT=os.path.join(out, "raw"))

    peers = openssl_peer(args.quick)
    for tool, cmd in (("bwrap", "bwrap --version"), ("runsc", "runsc --version"),
                      ("nft", "nft --version"), ("openssl", "openssl version"),
                      ("nats-server", "nats-server --version"), ("dnsmasq", "dnsmasq --version"),
                      ("gnuplot", "gnuplot --version"), ("perf", "perf --version")):
        v = sh(cmd).splitlines()[0] if have(tool) and sh(cmd) else "not installed"
        peers.append((tool, v, cmd))

    results = []
    for s in args.specs:
        if (only and s["name"] not in only) or s["name"] in skip:
            results.append(dict(name=s["name"], cmd=s["cmd"], reports=[], status="skipped",
                                reason="not selected (--only/--skip)", seconds=0.0, rc=0, log=""))
            continue
        results.append(run_bench(s, os.path.join(out, "logs"), env))

    args.sweep_n = 20 if args.quick else 300
    levels = [1, 2] if args.quick else [1, 2, 4, 8, 16]
    if (only and "sweep" not in only) or "sweep" in skip:
        sweep = dict(status="skipped", reason="not selected (--only/--skip)", rows=[], seconds=0.0)
    else:
        sweep = Sweep(os.path.join(args.build_dir, "cellos-reactor"), levels, args.sweep_n).run()

    # Figures.
    plots = Plots(os.path.join(out, "figures"))
    figs = {}
    raw = os.path.join(out, "raw")

    def add(section, fig, caption):
        if fig:
            figs.setdefault(section, []).append((fig, caption))

    add("spawn", plots.cdf("spawn-latency", "One isolated /bin/true, end to end (spawn_bench)",
                           "milliseconds", read_csv_series(os.path.join(raw, "spawn.csv"), 2),
                           logx=True), "spawn: latency distribution (CDF)")
    add("cell", plots.cdf("cell-latency", "One cell in a running reactor vs the floor (cell_bench)",
                          "milliseconds", read_csv_series(os.path.join(raw, "cell.csv"), 2)),
        "cell: latency distribution (CDF)")
    add("gvisor", plots.cdf("gvisor-latency", "/bin/true: native cell, gVisor cell, runsc (gvisor_bench)",
                            "milliseconds", read_csv_series(os.path.join(raw, "gvisor.csv"), 2),
                            logx=True), "gvisor: latency distribution (CDF)")
    add("dns", plots.cdf("dns-latency", "One DNS query: straight to dnsmasq vs through a cell's proxy",
                         "microseconds", read_csv_series(os.path.join(raw, "dns-latency.csv"), 2),
                         logx=True), "dns: query latency distribution (CDF)")
    nft = next((r for r in results if r["name"] == "nft"), None)
    if nft and nft["reports"]:
        pts = []
        for row in nft["reports"][0].get("rows", []):
            m = re.match(r"(\d+) targets", row["name"])
            if m:
                pts.append((int(m.group(1)), row.get("libnftnl median ms"), row.get("nft -f median ms")))
        if pts:
            dat = os.path.join(out, "figures", "nft-rules.dat")
            with open(dat, "w") as f:
                for t, a, b in pts:
                    f.write(f"{t} {a} {b}\n")
            add("nft", plots.plot("nft-rules", "set logscale xy\nset key top left\n"
                                  "set title 'Ruleset install per cell (median)'\n"
                                  "set xlabel 'egress targets (rules)'\nset ylabel 'milliseconds'\n"
                                  f"plot '{dat}' using 1:2 with linespoints lw 2 title 'libnftnl batch (reactor)', "
                                  f"'' using 1:3 with linespoints lw 2 title 'nft -f (peer)'\n"),
                "nft: install time against rules")
    daemon = next((r for r in results if r["name"] == "daemon"), None)
    started = os.path.join(raw, "daemon-density-started.jsonl")
    if daemon and daemon["status"] != "skipped":
        pts = admission_curve(started)
        if pts:
            dat = os.path.join(out, "figures", "admission-live-cells.dat")
            with open(dat, "w") as f:
                for x, y in pts:
                    f.write(f"{x} {y}\n")
            add("daemon", plots.plot("admission-live-cells", "set key top right\nset yrange [0:*]\n"
                                     "set title 'Admission rate against live cells (daemon_bench density: sleepers)'\n"
                                     "set xlabel 'live cells'\nset ylabel 'cells started per second'\n"
                                     f"plot '{dat}' using 1:2 with linespoints lw 2 title 'reactor daemon'\n"),
                "daemon: admission rate against live cells")
        else:
            plots.errors.append("admission-live-cells: no started events in " + started)
    if sweep["rows"]:
        dat = os.path.join(out, "figures", "throughput-concurrency.dat")
        with open(dat, "w") as f:
            for k, r, b in sweep["rows"]:
                f.write(f"{k} {r} {'?' if b is None else b}\n")
        add("sweep", plots.plot("throughput-concurrency", "set datafile missing '?'\nset logscale x 2\n"
                                "set key top left\nset yrange [0:*]\n"
                                f"set title 'Throughput against concurrency ({args.sweep_n} /bin/true cells)'\n"
                                "set xlabel 'cells at once (max_concurrent_cells / xargs -P)'\n"
                                "set ylabel 'cells per second'\n"
                                f"plot '{dat}' using 1:2 with linespoints lw 2 title 'reactor daemon', "
                                f"'' using 1:3 with linespoints lw 2 title 'bwrap, xargs -P'\n"),
            "throughput against concurrency")
    flows_dir = os.path.join(out, "flows")
    for name in ("conns_per_s", "connect_latency", "reactor_cpu_per_flow"):
        src = os.path.join(flows_dir, name + ".png")
        if os.path.exists(src) and os.path.getsize(src) > 0:
            shutil.copy(src, os.path.join(out, "figures", "flows-" + name + ".png"))
            add("flows", "flows-" + name + ".png", "flows: " + name.replace("_", " "))

    load1 = loadavg()
    end = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    path = os.path.join(out, "report.md")
    write_report(path, args, machine, start, end, load0, load1, peers, results, sweep, figs,
                 plots.errors, time.monotonic() - t_start)
    failed = [r["name"] for r in results if r["status"] == "failed"]
    if sweep["status"] == "failed":
        failed.append("throughput against concurrency")
    print(f"report: wrote {path} ({(time.monotonic() - t_start) / 60:.1f} min)"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
