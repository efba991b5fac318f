"""Reading back the numbers a page rendered: the LaTeX of the update equations and of the split-KV
merge, as the page hands them to st.latex, parsed into the values the audience sees (4
significant digits) so tests can check each equation with exactly those values.

`check_update(tex)` and `check_merge(tex)` return the list of equations that do not hold with
the printed numbers, to the rounding of the printed numbers."""
import math
import re

NUM = r"(-?\\infty|\\mathrm\{NaN\}|-?[0-9.]+(?: \\times 10\^\{-?\d+\})?)"
PRINTED = 5e-4  # half a unit in the 4th significant digit, relative


def num(text: str) -> float:
    text = text.strip()
    if text in (r"-\infty", r"\infty"):
        return -math.inf if text.startswith("-") else math.inf
    if text == r"\mathrm{NaN}":
        return math.nan
    m = re.fullmatch(r"(-?[0-9.]+) \\times 10\^\{(-?\d+)\}", text)
    return float(m[1]) * 10 ** int(m[2]) if m else float(text)


def vec(text: str) -> list[float]:
    """'[1.2, -3.4, \\dots]' -> [1.2, -3.4] (the shown entries)."""
    inner = text.strip()[1:-1]
    return [num(x) for x in inner.split(",") if x.strip() != r"\dots"]


def _close(got: float, want: float, terms: float) -> bool:
    """got == want up to the rounding of printed numbers whose magnitudes add up to `terms`."""
    if math.isinf(got) or math.isinf(want):
        return got == want
    return abs(got - want) <= 2 * PRINTED * (terms + abs(got)) + 1e-12


def check_update(tex: str) -> list[str]:
    """The equations of viz/figures/attention.update_equations that fail with their printed numbers."""
    body = tex.removeprefix(r"\begin{aligned}").removesuffix(r"\end{aligned}")
    lines = [x.strip() for x in re.split(r"\\\\\[\d+pt\]", body)]
    bad = []
    m = re.search(r"\\max\(" + NUM + r",\\ " + NUM + r"\) = \\mathbf\{" + NUM + r"\}", lines[0])
    if not m:
        return [f"no max line in {lines[0]!r}"]
    m_old, rowmax, m_new = (num(x) for x in m.groups())
    if m_new != max(m_old, rowmax):
        bad.append(f"max({m_old}, {rowmax}) = {m_new}")
    if r"every key so far is masked" in lines[1]:  # the row has seen no key: alpha = 0, l = 0
        if m_new != -math.inf:
            bad.append(f"a row with no key seen shows m_new = {m_new}")
        return bad
    a = re.search(r"= e\^\{" + NUM + r" - \(?" + NUM + r"\)?\} = \\mathbf\{" + NUM + r"\}", lines[1])
    if not a:
        return bad + [f"no alpha line in {lines[1]!r}"]
    x_old, x_new, alpha = (num(x) for x in a.groups())
    if (x_old, x_new) != (m_old, m_new):
        bad.append(f"alpha's exponent shows {x_old} - {x_new}, the max line {m_old} - {m_new}")
    if math.isfinite(x_old):
        want = math.exp(x_old - x_new)
        tol = want * 2 * PRINTED * (1 + abs(x_old) + abs(x_new)) + 1e-12
    else:  # the program's first tile: m_old = -inf
        want, tol = 0.0, 0.0
    if not abs(alpha - want) <= tol:
        bad.append(f"alpha = e^({x_old} - {x_new}) = {want:.6g}, shown {alpha}")
    lm = re.search(r"= " + NUM + r" \\cdot " + NUM + r" \+ " + NUM + r" = \\mathbf\{" + NUM + r"\}", lines[2])
    if not lm:
        return bad + [f"no l line in {lines[2]!r}"]
    a2, l_old, rowsum, l_new = (num(x) for x in lm.groups())
    if a2 != alpha:
        bad.append(f"l's alpha {a2} is not the alpha line's {alpha}")
    if not _close(l_new, a2 * l_old + rowsum, abs(a2 * l_old) + abs(rowsum)):
        bad.append(f"l_new = {a2} * {l_old} + {rowsum} = {a2 * l_old + rowsum:.6g}, shown {l_new}")
    new = vec(lines[4].removeprefix("&= "))
    if r"\frac" in lines[3]:  # FA1: O_new = (l_old alpha O_old + pV) / l_new
        f = re.search(r"\\frac\{" + NUM + r" \\cdot " + NUM + r" \\cdot (\[.*?\]) \+ (\[.*?\])\}\{" + NUM + r"\}",
                      lines[3])
        if not f:
            return bad + [f"no O line in {lines[3]!r}"]
        lo, al, old, pv, ln = num(f[1]), num(f[2]), vec(f[3]), vec(f[4]), num(f[5])
        for k, (o, p, n) in enumerate(zip(old, pv, new, strict=False)):
            want = (lo * al * o + p) / ln
            if not _close(n, want, (abs(lo * al * o) + abs(p)) / ln):
                bad.append(f"O_new[{k}] = ({lo} * {al} * {o} + {p}) / {ln} = {want:.6g}, shown {n}")
        return bad
    acc = re.search(r"pV = " + NUM + r" \\cdot (\[.*?\]) \+ (\[.*?\])", lines[3])
    if not acc:
        return bad + [f"no acc line in {lines[3]!r}"]
    a3, old, pv = num(acc[1]), vec(acc[2]), vec(acc[3])
    if a3 != alpha:
        bad.append(f"acc's alpha {a3} is not the alpha line's {alpha}")
    for k, (o, p, n) in enumerate(zip(old, pv, new, strict=False)):
        if not _close(n, a3 * o + p, abs(a3 * o) + abs(p)):
            bad.append(f"acc_new[{k}] = {a3} * {o} + {p} = {a3 * o + p:.6g}, shown {n}")
    return bad


def check_merge(tex: str) -> list[str]:
    """viz/figures/split.merge_equations: M = max of the shown m_s; L = the sum of the shown terms."""
    bad = []
    mm = re.search(r"\\max\((.*?)\) = " + NUM, tex)
    ms = [num(x) for x in mm[1].split(",") if x.strip() != r"\dots"]
    big_m = num(mm[2])
    if r"\dots" not in mm[1] and big_m != max(ms):
        bad.append(f"max({ms}) = {big_m}")
    terms = re.findall(NUM + r"\\,e\^\{" + NUM + r"\}", tex)
    big_l = num(re.search(r"= " + NUM + r"\\\\\s*O &", tex)[1])
    shown = [(num(a), num(b)) for a, b in terms]
    for (_, x), m_s in zip(shown, ms, strict=False):
        if abs(x - (m_s - big_m)) > 2 * PRINTED * (abs(m_s) + abs(big_m)) + 1e-9:
            bad.append(f"exponent {x} is not m_s - M = {m_s} - {big_m}")
    if r"+ \dots" not in tex:
        want = sum(l * math.exp(x) for l, x in shown)
        if not _close(big_l, want, sum(abs(l * math.exp(x)) for l, x in shown) * (1 + max(abs(x) for _, x in shown))):
            bad.append(f"L = {want:.6g} from the shown terms, shown {big_l}")
    return bad


def check_out(tex: str) -> list[str]:
    """viz/screens.out_tex: out = acc / l with the printed acc, l and out; the kernel's out within
    its dtype of the printed acc / l (the kernel rounds out to the input dtype); |Δ| against float64."""
    bad = []
    fa1 = re.search(r"O_\\text\{last\} &= (\[.*?\])", tex)  # FA1 keeps O normalized: no division at the end
    m = re.search(r"= (\[.*?\]) / " + NUM + r" = (\[.*?\])", tex)
    if not m and not fa1:
        return [f"no out = acc / l line in {tex[:80]!r}"]
    acc, ell, quot = (vec(m[1]), num(m[2]), vec(m[3])) if m else ([], 1.0, vec(fa1[1]))
    for k, (a, q) in enumerate(zip(acc, quot, strict=False)):
        if not _close(q, a / ell, abs(a / ell)):
            bad.append(f"acc / l [{k}] = {a} / {ell} = {a / ell:.6g}, shown {q}")
    kern = vec(re.search(r"\\text\{kernel's out\} &= (\[.*?\])", tex)[1])
    ref = vec(re.search(r"\\text\{float64\} &= (\[.*?\])", tex)[1])
    err = num(re.search(r"\\max\|\\Delta\| = " + NUM, tex)[1])
    for k, (o, q, r) in enumerate(zip(kern, quot, ref, strict=False)):
        if abs(o - q) > 1e-3 * max(1.0, abs(q)) + 2 * PRINTED * abs(q):  # out is stored in the inputs' dtype
            bad.append(f"the kernel's out[{k}] {o} is not acc / l = {q}")
        if abs(o - r) > err * 1.05 + 2 * PRINTED * (abs(o) + abs(r)):
            bad.append(f"|out[{k}] - float64[{k}]| = {abs(o - r):.3g} is more than the shown max {err}")
    return bad


def _lines(tex: str) -> list[str]:
    return [x.strip() for x in tex.removeprefix(r"\begin{aligned}").removesuffix(r"\end{aligned}").split(r"\\[4pt]")]


def check_ring_merge(tex: str) -> list[str]:
    """viz/figures/ring.merge_tex: M = the max of the shown m's; each exponent m - M; L = the sum of
    the shown l e^(m - M); each weight l e^(m - M) / L; O[0] = the weighted sum of the shown O[0]'s,
    and the O vector's first entry is O[0]; all to the rounding of the printed numbers."""
    lines, bad = _lines(tex), []
    mm = re.search(r"= \\max\(([^()]*)\) = \\mathbf\{" + NUM + r"\}", lines[0])
    if not mm:
        return [f"no max line in {lines[0]!r}"]
    ms, big_m = [num(x) for x in mm[1].split(",")], num(mm[2])
    if not _close(big_m, max(ms), 0.0):
        bad.append(f"M = max({ms}) shown {big_m}")
    terms = re.findall(NUM + r"\\,e\^\{" + NUM + r"\}", lines[1])
    big_l = num(re.search(r"= \\mathbf\{" + NUM + r"\}$", lines[1])[1])
    ls, xs = [num(a) for a, _ in terms], [num(b) for _, b in terms]
    if len(terms) != len(ms):
        return bad + [f"{len(ms)} maxima but {len(terms)} terms in {lines[1]!r}"]
    for x, m in zip(xs, ms, strict=True):
        if abs(x - (m - big_m)) > 2 * PRINTED * (abs(m) + abs(big_m) + abs(x)) + 1e-9:
            bad.append(f"exponent {x} is not m - M = {m} - {big_m}")
    parts = [lv * math.exp(x) for lv, x in zip(ls, xs, strict=True)]
    if not _close(big_l, sum(parts), sum(abs(p) * (1 + abs(x)) for p, x in zip(parts, xs, strict=True))):
        bad.append(f"L = {sum(parts):.6g} from the shown terms, shown {big_l}")
    ow = re.findall(NUM + r" \\cdot \(?" + NUM + r"\)?", lines[2])
    o0 = num(re.search(r"= \\mathbf\{" + NUM + r"\}$", lines[2])[1])
    if len(ow) != len(ms):
        return bad + [f"{len(ms)} parts but {len(ow)} weighted O's in {lines[2]!r}"]
    for (w, _), p, x in zip(ow, parts, xs, strict=True):
        if not _close(num(w), p / big_l, abs(p / big_l) * (3 + abs(x))):
            bad.append(f"weight {num(w)} is not l e^(m - M) / L = {p / big_l:.6g}")
    want = sum(num(w) * num(o) for w, o in ow)
    if not _close(o0, want, sum(abs(num(w) * num(o)) for w, o in ow)):
        bad.append(f"O[0] = {want:.6g} from the shown weights and O's, shown {o0}")
    first = vec(lines[3].removeprefix("O &= "))[0]
    if first != o0:
        bad.append(f"O's first entry {first} is not the O[0] above, {o0}")
    return bad


def check_ring_final(tex: str) -> list[str]:
    """viz/figures/ring.final_tex: lse = M + log L with the printed M and L."""
    lines = _lines(tex)  # the full form: lse = M + log L = m + log l, then = lse; compact: one line
    a = re.search(r"= " + NUM + r" \+ \\log \(?" + NUM + r"\)?(?:$| = \\mathbf)", lines[0])
    lse = num(re.search(r"= \\mathbf\{" + NUM + r"\}", lines[0] if r"\mathbf" in lines[0] else lines[1])[1])
    if not a:
        return [f"no lse line in {lines[0]!r}"]
    m, l = num(a[1]), num(a[2])
    want = m + math.log(l)
    return [] if _close(lse, want, abs(m) + 1) else [f"lse = {m} + log {l} = {want:.6g}, shown {lse}"]


def check_softmax_step(tex: str) -> list[str]:
    """The Softmax page's step equation (viz/softmax_hand.step_tex) with its printed numbers: pass 1's
    m_new = max(m_old, max chunk), d_new = d_old e^(m_old - m_new) + sum; the last pass's y = e^(x - m) / d."""
    bad = []
    tex = tex.strip().strip("$").strip()  # st.latex hands the browser $$ ... $$
    if tex.startswith("y = "):
        terms = re.findall(r"\\frac\{e\^\{" + NUM + r" - " + NUM + r"\}\}\{" + NUM + r"\} = \\mathbf\{" + NUM + r"\}", tex)
        if not terms:
            return [f"no y terms in {tex!r}"]
        for xs, ms, ds, ys in terms:
            x, m, d, y = num(xs), num(ms), num(ds), num(ys)
            want = math.exp(x - m) / d
            if not abs(y - want) <= want * 2 * PRINTED * (2 + abs(x) + abs(m)) + 1e-12:
                bad.append(f"e^({x} - {m}) / {d} = {want:.6g}, shown {y}")
        return bad
    mx = re.search(r"\\max\[(.*?)\]\)[^=]*= \\max\(" + NUM + r",\\ " + NUM + r"\) = \\mathbf\{" + NUM + r"\}", tex)
    if not mx:
        return [f"no max line in {tex!r}"]
    xs = [num(v) for v in mx[1].split(",")]
    m_old, cmax, m_new = num(mx[2]), num(mx[3]), num(mx[4])
    if cmax != max(xs):
        bad.append(f"max{xs} = {max(xs)}, shown {cmax}")
    if m_new != max(m_old, cmax):
        bad.append(f"max({m_old}, {cmax}) = {max(m_old, cmax)}, shown {m_new}")
    dl = re.search(r"= " + NUM + r" \\cdot e\^\{" + NUM + r" - \(" + NUM + r"\)\} \+ " + NUM
                   + r" = \\mathbf\{" + NUM + r"\}", tex)
    if not dl:
        return bad + [f"no d line in {tex!r}"]
    d_old, e_old, e_new, s, d_new = (num(v) for v in dl.groups())
    if (e_old, e_new) != (m_old, m_new):
        bad.append(f"d's exponent shows {e_old} - {e_new}, the max line {m_old} - {m_new}")
    alpha = math.exp(e_old - e_new) if math.isfinite(e_old) else 0.0
    want = sum(math.exp(x - m_new) for x in xs)
    if not _close(s, want, want * (1 + abs(m_new))):
        bad.append(f"sum e^(x - {m_new}) over {xs} = {want:.6g}, shown {s}")
    kept = abs(d_old * alpha)  # the rescaled old sum; its exponent's rounding scales with |m|
    if not _close(d_new, d_old * alpha + s, (kept * (1 + abs(e_old) + abs(e_new)) if kept else 0.0) + abs(s)):
        bad.append(f"d_new = {d_old} * e^({e_old} - {e_new}) + {s} = {d_old * alpha + s:.6g}, shown {d_new}")
    return bad
