#!/usr/bin/env python3
"""Summarise the per-tile timeline of a wgmma decode kernel built with -DMLJ_TRACE=1.

Reads `mlj-trace <role> tile <t>: e0 e1 e2 e3` lines (templates/decode/trace.cuh; SM cycles since
each role started) from stdin or the files named, keeps the last complete print (a bench prints
one per combine launch), and prints, per role, the median and mean of each phase over the tiles
after the first two (warm-up), plus the first tile's events:
  producer:  slot wait = e1 - e0, copies issued = e2 - e1, period = e0(next) - e0
  consumer:  landing wait = e1 - e0, S = e2 - e1, softmax + P.V = e3 - e2, period = e0(next) - e0
(wide tiles stamp other events on odd entries; see trace.cuh - their phases are printed the same
way, by entry), the last print's spread of CTA start / end times (`mlj-trace ctas` lines) and, on
the persistent path, its kernels' boundaries (`mlj-trace phases`, also as durations, and their
medians over every print: a -DMLJ_TRACE_PHASES=1 build prints only those lines); with
per-CTA lines (`mlj-trace cta`, grids of up to 1024 CTAs), the latest CTAs and their SMs, and
whether the same SMs are slow in the last two prints.
"""
import fileinput
import re
import statistics
import sys

LINE = re.compile(r"mlj-trace (\w+) tile (\d+): (-?\d+) (-?\d+) (-?\d+) (-?\d+)")
PHASES = {
    "producer0": ("slot wait", "copies issued", None),
    "consumer0": ("landing wait", "S", "softmax + P.V"),
    "consumer1": ("landing wait", "S", "softmax + P.V"),
}


CTAS = re.compile(r"mlj-trace (ctas|phases|metadata marks) .*")


def last_print(lines):
    """The last complete print (a new one starts where a role's tile numbers go back) and the
    last four `ctas` / `phases` lines."""
    prints, current, seen, ctas = [], {}, {}, []
    for line in lines:
        c = CTAS.search(line)
        if c:
            ctas = (ctas + [c.group(0)])[-4:]
            continue
        m = LINE.search(line)
        if not m:
            continue
        role, tile = m.group(1), int(m.group(2))
        events = [int(m.group(i)) for i in range(3, 7)]
        if tile <= seen.get(role, -1):
            prints.append(current)
            current, seen = {}, {}
        current.setdefault(role, {})[tile] = events
        seen[role] = tile
    if current:
        prints.append(current)
    return (prints[-1] if prints else {}), ctas


CTA_LINE = re.compile(r"mlj-trace cta (\d+) sm (\d+) ns: (-?\d+) (-?\d+)")


def cta_prints(lines):
    """Every print's per-CTA lines ({cta: (sm, start, end)}), in order; a print starts where the
    CTA numbers go back."""
    prints, current, last = [], {}, -1
    for line in lines:
        m = CTA_LINE.search(line)
        if not m:
            continue
        c, sm, start, end = (int(x) for x in m.groups())
        if c <= last and current:
            prints.append(current)
            current = {}
        current[c] = (sm, start, end)
        last = c
    if current:
        prints.append(current)
    return prints


def summarise_ctas(prints, out=sys.stdout):
    """The last print's latest CTAs and their SMs, and, with two prints or more, how alike the
    last two are per SM (the correlation of each SM's CTA duration between them: near 1 when the
    same SMs are slow in every run); with three or more, over all prints, which SMs end last and
    which lag most behind each print's mean end."""
    if not prints:
        return
    last = prints[-1]
    ends = sorted(last.items(), key=lambda kv: kv[1][2])
    latest = ", ".join(f"cta {c} sm {sm} {end / 1000:.1f} us" for c, (sm, _, end) in reversed(ends[-5:]))
    out.write(f"latest CTAs: {latest}\n")
    if len(prints) < 2:
        return
    def per_sm(p):
        return {sm: end - start for sm, start, end in p.values()}
    a, b = per_sm(prints[-2]), per_sm(prints[-1])
    sms = sorted(set(a) & set(b))
    if len(sms) < 3:
        return
    xa, xb = [a[s] for s in sms], [b[s] for s in sms]
    ma, mb = statistics.mean(xa), statistics.mean(xb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(xa, xb))
    var = (sum((x - ma) ** 2 for x in xa) * sum((y - mb) ** 2 for y in xb)) ** 0.5
    corr = cov / var if var > 0 else float("nan")
    out.write(f"per-SM CTA duration, last two prints ({len(sms)} SMs): correlation {corr:.2f}\n")
    if len(prints) < 3:
        return
    # Over every print: which SM ends last how often, and each SM's mean lag behind its print's
    # mean end (a steady slow SM shows in both; a weighting per SM would target these).
    last_sm, lag = {}, {}
    for p in prints:
        mean_end = statistics.mean(end for _, _, end in p.values())
        sm_last = max(p.values(), key=lambda v: v[2])[0]
        last_sm[sm_last] = last_sm.get(sm_last, 0) + 1
        for sm, _, end in p.values():
            lag.setdefault(sm, []).append(end - mean_end)
    often = ", ".join(f"sm {sm} {n}x" for sm, n in sorted(last_sm.items(), key=lambda kv: -kv[1])[:4])
    out.write(f"last CTA over {len(prints)} prints: {often}\n")
    slow = sorted(lag.items(), key=lambda kv: -statistics.mean(kv[1]))[:6]
    lags = ", ".join(f"sm {sm} {statistics.mean(v) / 1000:+.1f}" for sm, v in slow)
    out.write(f"largest mean lag behind each print's mean end (us): {lags}\n")


PHASE_LINE = re.compile(r"mlj-trace phases ns: metadata (-?\d+) (-?\d+) stage1 (-?\d+) (-?\d+) (-?\d+) "
                        r"reduce (-?\d+) (-?\d+) (-?\d+)"
                        r"(?: last piece (-?\d+) last tile waited (-?\d+) last reduce in (-?\d+))?"
                        r"(?: merge lse (-?\d+) summed (-?\d+) exchanged (-?\d+))?")


def phase_durations(line):
    """The persistent path's boundaries as durations in us: the metadata kernel, its hand-over to
    stage 1 (end -> first CTA past its wait), stage 1 (past its wait -> last CTA out), the reduce's
    first CTA past its wait relative to stage 1's end (negative: the reduce waits per tile and
    starts before stage 1 ends), and the reduce's end after stage 1's. None when absent (-1)."""
    m = PHASE_LINE.search(line)
    if not m:
        return None
    v = [int(x) if x is not None else -1 for x in m.groups()]
    (md_in, md_out, s1_in, s1_waited, s1_out, r_in, r_waited, r_out, piece_last, waited_last, r_in_last,
     lse_last, summed_last, exchanged_last) = v
    if min(md_out, s1_waited, s1_out) < 0:
        return None
    spans = [("metadata kernel", md_out - md_in), ("to stage 1", s1_waited - md_out), ("stage 1", s1_out - s1_waited)]
    if min(r_waited, r_out) >= 0:
        spans += [("first reduce CTA past its wait, from stage 1's end", r_waited - s1_out),
                  ("reduce ends after stage 1", r_out - s1_out)]
    if min(piece_last, waited_last, r_out, r_in_last) >= 0:  # -DMLJ_TRACE_PHASES builds and later
        spans += [("last reduce CTA in, from stage 1's end", r_in_last - s1_out),
                  ("last piece counted, from stage 1's end", piece_last - s1_out),
                  ("last tile's reduce past its wait, after the last piece", waited_last - piece_last),
                  ("reduce ends after that wait", r_out - waited_last)]
    if min(waited_last, lse_last, summed_last, exchanged_last, r_out) >= 0:  # session 15 on: the merge's steps
        spans += [("  of which: the last warp's LSEs read, after that wait", lse_last - waited_last),
                  ("  its weighted sums done, after that", summed_last - lse_last),
                  ("  the ways' sums exchanged, after that", exchanged_last - summed_last),
                  ("  the reduce's end (stores issued), after that", r_out - exchanged_last)]
    return spans


def summarise_phases(lines, out=sys.stdout):
    """Medians of each span over every `mlj-trace phases` line (a -DMLJ_TRACE_PHASES=1 bench
    prints about one call in four), in us."""
    runs = [spans for spans in (phase_durations(line) for line in lines) if spans]
    if len(runs) < 2:
        return False
    out.write(f"phases over {len(runs)} printed calls (median us):\n")
    for i, (name, _) in enumerate(runs[0]):
        values = [spans[i][1] / 1000 for spans in runs if len(spans) > i]
        out.write(f"  {name}: {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})\n")
    return True


def summarise(parsed, out=sys.stdout):
    timeline, ctas = parsed
    for line in ctas:
        out.write(line + "\n")
        spans = phase_durations(line)
        if spans:
            out.write("  " + ", ".join(f"{name} {ns / 1000:.1f} us" for name, ns in spans) + "\n")
    if not timeline:
        out.write("no mlj-trace lines (build with MLAJIT_COMPILE_OPTIONS=-DMLJ_TRACE=1, 2+ splits)\n")
        return 1
    for role in sorted(timeline):
        tiles = timeline[role]
        order = sorted(tiles)
        names = PHASES.get(role, ("e1 - e0", "e2 - e1", "e3 - e2"))
        steady = order[2:] if len(order) > 3 else order
        out.write(f"{role}: {len(order)} tiles; first tile events {tiles[order[0]]}\n")
        for i, name in enumerate(names):
            if name is None:
                continue
            values = [tiles[t][i + 1] - tiles[t][i] for t in steady]
            out.write(f"  {name:>14}: median {statistics.median(values):8.0f}  mean {statistics.mean(values):8.0f} cycles\n")
        periods = [tiles[b][0] - tiles[a][0] for a, b in zip(order, order[1:]) if a in steady]
        if periods:
            out.write(f"  {'period':>14}: median {statistics.median(periods):8.0f}  mean {statistics.mean(periods):8.0f} cycles"
                      f" (tiles {steady[0]}..{steady[-1]})\n")
    return 0


if __name__ == "__main__":
    lines = list(fileinput.input())
    rc = summarise(last_print(lines))
    summarise_ctas(cta_prints(lines))
    if summarise_phases(lines):
        rc = 0  # a phases-only build has no tile lines
    sys.exit(rc)
