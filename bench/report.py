#!/usr/bin/env python3
"""bench/report.py - bench/compare's tables (and plot) from loadgen's JSON lines.

Each input line is one measured window: loadgen's JSON plus "server", "row"
and "rep".  Every figure is the median over the repetitions; ratios are to
nginx's median in the same run.  The crypto floor comes from the text of
`openssl speed ecdhp256 ecdsap256 ecdhx25519 rsa2048`.  Server "twoway_pg"
is invoice-server on PostgreSQL: its CPU is invoice-server's plus the
postmaster tree's (loadgen's server_cpu_us_per_op_each: [invoice-server,
PostgreSQL]).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

SERVERS = ["twoway", "nginx", "node"]
NAMES = {"twoway": "twoway", "nginx": "nginx", "node": "Node.js",
         "twoway_pg": "twoway on PostgreSQL"}

# row id, label, target ratio to nginx (None: no target), plot label; the
# targets are issue 15's (issue 6's were 0.7, 0.8, 0.6, 0.6 and 1.0)
CPU_ROWS = [
    ("full13", "Full handshake, TLS 1.3", 0.45, "full 1.3"),
    ("full12", "Full handshake, TLS 1.2", 0.55, "full 1.2"),
    ("resume13", "Resumed handshake, TLS 1.3", 0.35, "resumed 1.3"),
    ("resume12", "Resumed handshake, TLS 1.2", 0.3, "resumed 1.2"),
    ("keepalive", "Keep-alive `GET /invoices/{n}` ¹", 0.8, "keep-alive"),
    ("keeproot", "Keep-alive `GET /` (the newest) ¹", 0.8, "keep-alive /"),
    ("full13rsa", "Full handshake, TLS 1.3, RSA-2048 ²", None, "full 1.3 RSA"),
]

# Idle memory: issue 15's target, as a ratio to nginx.
IDLE_TARGET = 0.7
# Session cache rows: row id, label; target in bytes per stored session.
SESSION_ROWS = [
    ("sess13", "TLS 1.3 (one ticket a handshake)"),
    ("sess12", "TLS 1.2 (session id)"),
]
SESSION_TARGET = 1024

# PostgreSQL rows (issue 13): row id, label; target for twoway on PostgreSQL
# as a ratio to nginx (None: no nginx figure, POST stores nothing there).
PG_ROWS = [
    ("keepalive", "Keep-alive `GET /invoices/{n}` ⁴", 1.0),
    ("post", "`POST /invoices`, a new invoice each, keep-alive ⁵", None),
]


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            d = json.loads(line)
            rows.setdefault((d["row"], d["server"]), []).append(d)
    return rows


def median_of(windows, key):
    vals = [w[key] for w in windows if not w.get("failed") and w.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt_num(v, digits=0):
    if v is None:
        return "n/a"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def fmt_ratio(v, base):
    if v is None or not base:
        return "n/a"
    return f"{v / base:.2f}×"


def speed_floor(path):
    """Microseconds per operation from `openssl speed` output."""
    text = open(path).read()
    out = {}
    m = re.search(r"256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", text)
    if m:
        out["ecdsa_sign"] = 1e6 / float(m.group(1))
        out["ecdsa_verify"] = 1e6 / float(m.group(2))
    m = re.search(r"256 bits ecdh \(nistp256\)\s+\S+\s+([\d.]+)", text)
    if m:
        out["ecdh_p256"] = 1e6 / float(m.group(1))
    m = re.search(r"bits ecdh \(X25519\)\s+\S+\s+([\d.]+)", text)
    if m:
        out["ecdh_x25519"] = 1e6 / float(m.group(1))
    m = re.search(r"rsa 2048 bits\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", text)
    if m:
        out["rsa_sign"] = 1e6 / float(m.group(1))
        out["rsa_verify"] = 1e6 / float(m.group(2))
    return out


def spread(rows, idle_sizes):
    """How far the windows behind each median lie apart, and the ratio to
    nginx repetition by repetition (windows of one repetition are taken
    close together, so a slow phase of the machine hits both)."""
    lines = ["| Spread over the windows | twoway (min–max) | nginx (min–max) "
             "| twoway ÷ nginx by repetition (min–max) |",
             "|---|--:|--:|--:|"]
    items = [(row, label.rstrip(" ¹²"), "server_cpu_us_per_op", 1, "µs")
             for row, label, _, _ in CPU_ROWS]
    # twoway on PostgreSQL, in the twoway column
    items += [("keepalive", "Keep-alive `GET /invoices/{n}`, PostgreSQL",
               "server_cpu_us_per_op", 1, "µs", "twoway_pg")]
    items += [(f"idle{n}", f"Idle memory, {n:,} connections", "rss_per_conn_bytes", 1024, "KiB")
              for n in idle_sizes]
    items += [(row, f"Session cache, {label}", "rss_per_conn_bytes", 1, "B")
              for row, label in SESSION_ROWS]
    for row, label, key, div, unit, *ours in items:
        by_rep = {}
        vals = {}
        for s, name in ((ours[0] if ours else "twoway", "twoway"), ("nginx", "nginx")):
            for w in rows.get((row, s), []):
                if w.get("failed") or w.get(key) is None:
                    continue
                vals.setdefault(name, []).append(w[key] / div)
                by_rep.setdefault(w.get("rep"), {})[name] = w[key]
        if "twoway" not in vals or "nginx" not in vals:
            continue
        ratios = [r["twoway"] / r["nginx"] for r in by_rep.values()
                  if r.get("nginx") and "twoway" in r]
        def cell(v):
            digits = 1 if unit == "KiB" or (unit != "B" and max(v) < 100) else 0
            return f"{fmt_num(min(v), digits)}–{fmt_num(max(v), digits)} {unit}"

        if unit == "B":  # no ratio: nginx and Node.js keep no sessions
            lines.append(f"| {label} | {cell(vals['twoway'])} | {cell(vals['nginx'])} | – |")
            continue
        lines.append(f"| {label} | {cell(vals['twoway'])} | {cell(vals['nginx'])} "
                     f"| {min(ratios):.2f}×–{max(ratios):.2f}× |" if ratios else
                     f"| {label} | {cell(vals['twoway'])} | {cell(vals['nginx'])} | n/a |")
    lines.append("")
    return lines


def median_part(windows, i):
    """The median of element i of server_cpu_us_per_op_each."""
    vals = [w["server_cpu_us_per_op_each"][i] for w in windows
            if not w.get("failed") and len(w.get("server_cpu_us_per_op_each") or []) > i]
    return statistics.median(vals) if vals else None


def fmt_us(v):
    # One decimal below 100 µs, as in the main table.
    return fmt_num(v, 1 if v is not None and v < 100 else 0)


def pg_table(rows):
    """twoway on SQLite and on PostgreSQL side by side (issue 13)."""
    if not any(rows.get((row, s)) for row, _, _ in PG_ROWS for s in ("twoway", "twoway_pg")):
        return []
    lines = ["| Server CPU per request (µs) | twoway, SQLite | twoway, PostgreSQL "
             "| of which PostgreSQL | nginx | PostgreSQL ÷ nginx | PostgreSQL ÷ SQLite "
             "| target | met |",
             "|---|--:|--:|--:|--:|--:|--:|--:|:-:|"]
    for row, label, target in PG_ROWS:
        sq = median_of(rows.get((row, "twoway"), []), "server_cpu_us_per_op")
        pg_windows = rows.get((row, "twoway_pg"), [])
        pg = median_of(pg_windows, "server_cpu_us_per_op")
        part = median_part(pg_windows, 1)
        ng = median_of(rows.get((row, "nginx"), []), "server_cpu_us_per_op")
        if not pg_windows:
            tgt, met = ("–", "–") if target is None else (f"≤ {target:.1f}×", "not run")
        elif target is None:
            tgt, met = "–", "–"
        else:
            tgt = f"≤ {target:.1f}×"
            met = "yes" if pg is not None and ng and pg / ng <= target else "no"
        lines.append(f"| {label} | {fmt_us(sq)} | {fmt_us(pg) if pg_windows else 'not run'} "
                     f"| {fmt_us(part) if pg_windows else '–'} "
                     f"| {fmt_us(ng) if ng is not None else '–'} "
                     f"| {fmt_ratio(pg, ng) if ng is not None else '–'} | {fmt_ratio(pg, sq)} "
                     f"| {tgt} | {met} |")
    lines.append("")
    lines.append("⁴ The same row as above, with twoway on PostgreSQL taking turns with the "
                 "others.  After the first read an invoice is answered from each worker's "
                 "cache of rendered invoices, on SQLite and on PostgreSQL alike, so this row "
                 "mostly measures that cache: what a client asking again gets.  "
                 "⁵ The tests' body (`invoice_test.py`), no Idempotency-Key, a new "
                 "`invoice_number` each request, each answered 201; each server groups "
                 "the inserts waiting into one transaction and answers once it is durable "
                 "(SQLite `synchronous=FULL`, PostgreSQL `fsync` and `synchronous_commit` "
                 "on).  On SQLite the figure is invoice-server's CPU alone (SQLite runs in "
                 "it); on PostgreSQL it is invoice-server's plus the postmaster's process "
                 "tree's (its backends, WAL writer, checkpointer), all pinned to CPU 0; "
                 "\"of which PostgreSQL\" is the latter.")
    lines.append("")
    return lines


def table(rows, speed, idle_sizes):
    lines = []
    env = os.environ
    lines.append(f"Machine: {env.get('BENCH_CPU', '?')}, {env.get('BENCH_CORES', '?')} cores; "
                 f"{env.get('BENCH_SOFTWARE', '')}.  ")
    lines.append(f"Each server alone on CPU 0, loadgen on CPU 1; "
                 f"{env.get('BENCH_SETTINGS', '')}; ECDSA P-256 certificates unless marked. "
                 f"Run {time.strftime('%Y-%m-%d')}.")
    lines.append("")
    lines.append("| Server CPU per operation (µs) | twoway | nginx | Node.js "
                 "| twoway ÷ nginx | Node.js ÷ nginx | target | met |")
    lines.append("|---|--:|--:|--:|--:|--:|--:|:-:|")
    plot = []
    for row, label, target, plot_label in CPU_ROWS:
        if not any(rows.get((row, s)) for s in SERVERS):
            continue  # not measured in this run (bench/compare --postgres-only)
        med = {s: median_of(rows.get((row, s), []), "server_cpu_us_per_op") for s in SERVERS}
        cells = []
        for s in SERVERS:
            # 9 µs and 10 µs would hide a 10 % difference: one decimal
            # below 100 µs.
            cell = fmt_num(med[s], 1 if med[s] is not None and med[s] < 100 else 0)
            share = median_of(rows.get((row, s), []), "resumed_share")
            if row.startswith("resume") and share is not None and share < 0.99:
                cell += f" ({share:.0%} resumed)"
            cells.append(cell)
        tw, ng, nd = med["twoway"], med["nginx"], med["node"]
        if target is None:
            tgt, met = "–", ("yes" if tw and nd and tw < nd else "no") + " ³"
        else:
            tgt = f"≤ {target:g}×"
            met = "yes" if (tw and ng and nd and tw / ng <= target and tw < nd) else "no"
        lines.append(f"| {label} | {' | '.join(cells)} | {fmt_ratio(tw, ng)} "
                     f"| {fmt_ratio(nd, ng)} | {tgt} | {met} |")
        plot.append((plot_label, med))
    lines.append("")
    if idle_sizes:
        lines.append("| Memory per idle connection (KiB) | twoway | nginx | Node.js "
                     "| twoway ÷ nginx | Node.js ÷ nginx | target | met |")
        lines.append("|---|--:|--:|--:|--:|--:|--:|:-:|")
    for n in idle_sizes:
        med = {s: median_of(rows.get((f"idle{n}", s), []), "rss_per_conn_bytes") for s in SERVERS}
        kib = {s: (v / 1024 if v is not None else None) for s, v in med.items()}
        tw, ng, nd = med["twoway"], med["nginx"], med["node"]
        met = "yes" if (tw is not None and ng and nd and tw / ng <= IDLE_TARGET and tw < nd) else "no"
        lines.append(f"| {n:,} connections | {fmt_num(kib['twoway'], 1)} | {fmt_num(kib['nginx'], 1)} "
                     f"| {fmt_num(kib['node'], 1)} | {fmt_ratio(tw, ng)} | {fmt_ratio(nd, ng)} "
                     f"| ≤ {IDLE_TARGET:g}× | {met} |")
    if idle_sizes:
        lines.append("")
    if any(rows.get((row, s)) for row, _ in SESSION_ROWS for s in SERVERS):
        lines.append("| Session cache: RSS growth per full handshake, connections closed (bytes) "
                     "| twoway | nginx | Node.js | target | met |")
        lines.append("|---|--:|--:|--:|--:|:-:|")
        for row, label in SESSION_ROWS:
            med = {s: median_of(rows.get((row, s), []), "rss_per_conn_bytes") for s in SERVERS}
            tw = med["twoway"]
            met = "yes" if tw is not None and tw <= SESSION_TARGET else "no"
            lines.append(f"| {label} | {fmt_num(tw)} | {fmt_num(med['nginx'])} "
                         f"| {fmt_num(med['node'])} | ≤ {SESSION_TARGET:,} | {met} |")
        lines.append("")
        lines.append("nginx (`ssl_session_tickets on`, no `ssl_session_cache`) and Node.js "
                     "keep no session on the server: their tickets carry it, encrypted, to "
                     "the client.  twoway keeps a stateful session cache (stateless tickets "
                     "only with `--ticket-keys`), so this row is twoway's own cost; its target "
                     "is in bytes, not a ratio.")
        lines.append("")
    if {"ecdsa_sign", "ecdsa_verify", "ecdh_p256", "ecdh_x25519"} <= speed.keys():
        hs = lambda dh: dh + speed["ecdsa_sign"] + 2 * speed["ecdsa_verify"]
        lines.append("Crypto floor (`openssl speed -seconds 1`, CPU 0): one ECDHE + one ECDSA P-256 "
                     "sign + two ECDSA verifies per mTLS handshake = "
                     f"**{hs(speed['ecdh_p256']):,.0f} µs** with P-256 ECDHE "
                     f"({speed['ecdh_p256']:.0f} + {speed['ecdsa_sign']:.0f} + "
                     f"2 × {speed['ecdsa_verify']:.0f}); "
                     f"{hs(speed['ecdh_x25519']):,.0f} µs with X25519, the group the loads negotiated.")
        if "rsa_sign" in speed:
            rsa = speed["ecdh_x25519"] + speed["rsa_sign"] + 2 * speed["rsa_verify"]
            lines.append(f"With RSA-2048 certificates: {rsa:,.0f} µs (X25519 + "
                         f"{speed['rsa_sign']:.0f} + 2 × {speed['rsa_verify']:.1f}).")
        lines.append("")
    lines.append("¹ twoway answers `GET /invoices/00095234` and `GET /` (the newest "
                 "invoice, the seed's route) from its database (SQLite) through each "
                 "worker's copy; nginx returns the "
                 "seed's JSON from its configuration (`return 200`); Node.js runs the seed's "
                 "handler.  ² No target in issue 6; shown for PRODUCT.md.  "
                 "³ Better than Node.js only.  \"met\" also asks twoway to beat Node.js.")
    lines.append("")
    lines.extend(pg_table(rows))
    lines.extend(spread(rows, idle_sizes))
    # Secondary: throughput, latency, resumption, errors.
    lines.append("| Window medians | server | req/s | p50 µs | p99 µs | resumed | server CPU busy | errors (all windows) |")
    lines.append("|---|---|--:|--:|--:|--:|--:|--:|")
    for row, label, _, _ in CPU_ROWS + [("post", "POST /invoices", None, None)] + [
            (f"idle{n}", f"Idle, {n:,} connections", None, None) for n in idle_sizes] + [
            (row, f"Session cache, {label}", None, None) for row, label in SESSION_ROWS]:
        for s in SERVERS + ["twoway_pg"]:
            ws = rows.get((row, s), [])
            if not ws:
                continue
            share = median_of(ws, "resumed_share")
            busy = median_of(ws, "server_cpu_share")
            errors = sum(w.get("errors", 0) for w in ws) + sum(1 for w in ws if w.get("failed"))
            lines.append(f"| {label.rstrip(' ¹²')} | {NAMES[s]} | {fmt_num(median_of(ws, 'rps'))} "
                         f"| {fmt_num(median_of(ws, 'p50_us'))} | {fmt_num(median_of(ws, 'p99_us'))} "
                         f"| {'–' if share is None else f'{share:.0%}'} "
                         f"| {'–' if busy is None else f'{busy:.0%}'} | {errors} |")
    return "\n".join(lines) + "\n", plot


def draw(plot, png, floor_us=None):
    """Grouped bars, log scale; a dashed line at the crypto floor."""
    floor = ""
    if floor_us:
        floor = (f"set arrow from graph 0, first {floor_us:.0f} to graph 1, first {floor_us:.0f} "
                 f"nohead dt 2 lw 1.5 lc rgb '#444444' front\n"
                 f"set label 'crypto floor (ECDSA mTLS)' "
                 f"at graph 0.63, first {floor_us * 0.8:.0f} font ',9' tc rgb '#444444' front\n")
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "cpu.dat")
        with open(data, "w") as f:
            for label, med in plot:
                vals = " ".join(f"{med[s]:.1f}" if med[s] else "NaN" for s in SERVERS)
                f.write(f'"{label}" {vals}\n')
        script = f"""
set terminal pngcairo size 960,540 font "sans,11"
set output '{png}'
set title 'Server CPU time per operation (lower is better; median of windows)'
set ylabel 'µs of server CPU per operation (log scale)'
set logscale y
set yrange [1:*]
set grid ytics
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key top left
{floor}plot '{data}' using 2:xtic(1) title 'twoway' lc rgb '#1f77b4', \\
     '' using 3 title 'nginx' lc rgb '#2ca02c', \\
     '' using 4 title 'Node.js' lc rgb '#d62728'
"""
        subprocess.run(["gnuplot"], input=script, text=True, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", required=True)
    ap.add_argument("--speed")
    ap.add_argument("--out")
    ap.add_argument("--png")
    a = ap.parse_args()
    rows = load(a.results)
    idle_sizes = sorted({int(r[4:]) for r, _ in rows if r.startswith("idle")})
    speed = speed_floor(a.speed) if a.speed else {}
    text, plot = table(rows, speed, idle_sizes)
    sys.stdout.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    if a.png:
        floor = None
        if {"ecdsa_sign", "ecdsa_verify", "ecdh_x25519"} <= speed.keys():
            floor = speed["ecdh_x25519"] + speed["ecdsa_sign"] + 2 * speed["ecdsa_verify"]
        draw(plot, a.png, floor)


if __name__ == "__main__":
    main()
