"""The real learning curve's two models and its check: a weighted power law, its lack-of-fit
test, and a model-free monotone interpolation to measure how much n_eff depends on the model.

- **Weighted least squares.** ``err(n) = a * n**-b + c`` (Mikami et al.) is fitted to the mean
  error of each real size, each weighted by the inverse variance of that mean over the seeds.
  The seeds' spread differs about 20-fold between sizes in the demo; unweighted, the fit goes
  where the noisiest sizes pull it (held-out real images came out worth 113 and 252 real images
  at 100 and 200).
- **Moderated variances, not raw ones.** A size's variance from 3 seeds has 2 degrees of
  freedom, and 1 / s² then has no finite mean: raw weights are mostly luck (two sizes with the
  same true spread differ 19-fold or more in s² one time in ten: F(2, 2)), and a size whose 3
  seeds happen to agree takes the fit over. So each
  size's variance is shrunk towards a trend over sizes, the empirical-Bayes "moderated variance"
  of Smyth (2004, Stat. Appl. Genet. Mol. Biol. 3:1, section 6.2, with the trend of limma's
  ``squeezeVar``): log s² is regressed on log n (weighted by the inverse of its sampling
  variance, trigamma(d/2)), the spread of the residuals beyond sampling noise gives the prior's
  degrees of freedom d0, and each size gets (d0 s0² + d s²) / (d0 + d). When the residuals are
  no wider than sampling noise (d0 infinite) every size takes its trend value; when they are much
  wider, its own. This is written here because no library we use has it (limma is R). Before the
  trend, a size whose seeds agree exactly (accuracy is a count over a finite test set) is
  floored at :data:`VAR_FLOOR_SHARE` of the pooled variance; a one-seed size takes the trend.
- **Lack of fit.** chi² = Σ w_k (mean_k − fit_k)², the weighted residuals against the seed
  noise, on K − 3 degrees of freedom (K sizes, three parameters). With weights estimated from 3
  to 5 seeds the chi² distribution is a poor reference (1/s² from 3 seeds has no finite mean,
  so the statistic runs far above chi² under a correct model), so the p-value is calibrated by a
  parametric bootstrap (Davison & Hinkley 1997, ch. 4): curves are simulated from the fit, each
  size as k seeds drawn with its own (floored) variance, the variances are estimated and
  floored again, the curve is refitted and the statistic recomputed; p is the share of
  simulated statistics at least as large as the observed (plus one, over resamples plus one).
- **A second family.** The weighted means are made monotone (weighted isotonic regression,
  scikit-learn) and joined by a shape-preserving cubic in log n (PCHIP, Fritsch & Carlson
  1980, scipy): no parametric form, exact at the measured sizes. Where its n_eff and the power
  law's differ, the difference is the model's share of the answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

B_GRID = np.geomspace(1e-3, 10.0, 150)   # exponents b tried first; then refined between neighbours
C_MAX = 0.999
VAR_FLOOR_SHARE = 0.01   # no size's seed variance is taken below 1 % of the pooled (sd below a tenth)
LOF_LEVEL = 0.05         # a curve whose lack-of-fit p is below this fails the test
LOF_RESAMPLES = 1000


def power_law(n, a, b, c):
    """Error rate at n real images."""
    return a * np.power(n, -b) + c


def seed_variances(values: list[np.ndarray], sizes=None) -> np.ndarray:
    """The variance of each size's mean over its seeds (var / k), moderated towards a trend in
    log n (module docstring; ``sizes``: the sizes of ``values``, None: 1, 2, ... which only the
    trend's slope sees). NaN everywhere when no size has seed noise to measure (then the fit is
    unweighted)."""
    k = np.array([len(v) for v in values], float)
    var = np.array([np.var(v, ddof=1) if len(v) > 1 else np.nan for v in values])
    x = np.arange(1.0, len(values) + 1) if sizes is None else np.asarray(sizes, float)
    return _moderated(var[None, :], k, x)[0]


def _floored(var: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Rows ``var`` (R, K) of seed variances (NaN: one seed; k seeds) with each size's variance at
    least :data:`VAR_FLOOR_SHARE` of the row's pooled one (NaN stays NaN; a row without seed
    noise is all NaN)."""
    dof = np.where(np.isfinite(var), k - 1, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = np.nansum(var * dof, axis=1, keepdims=True) / dof.sum(axis=1, keepdims=True)
    out = np.where(np.isfinite(var), np.maximum(var, VAR_FLOOR_SHARE * pooled), np.nan)
    return np.where(np.isfinite(pooled) & (pooled > 0), out, np.nan)


def _trigamma_inverse(v: np.ndarray) -> np.ndarray:
    """y with trigamma(y) = v (v > 0): Newton's method from 0.5 + 1 / v, as Smyth (2004) gives
    it; it converges from that start for every v."""
    from scipy.special import polygamma

    y = 0.5 + 1.0 / v
    for _ in range(50):
        tri = polygamma(1, y)
        step = tri * (1.0 - tri / v) / polygamma(2, y)
        y = y + step
        if np.all(-step / y < 1e-8):
            break
    return y


def _moderated(var: np.ndarray, k: np.ndarray, x: np.ndarray) -> np.ndarray:
    """:func:`seed_variances` of rows ``var`` (R, K) of seed variances (NaN: one seed), k seeds
    per size, sizes ``x``: the moderated variance of each size's mean (module docstring)."""
    from scipy.special import digamma, polygamma

    s2 = _floored(var, k)
    d = np.where(np.isfinite(s2), k - 1.0, 0.0)                     # (R, K) degrees of freedom
    half = np.maximum(d, 1.0) / 2
    bias = digamma(half) - np.log(half)                              # E[log s²] - log sigma²
    tri = polygamma(1, half)                                         # var[log s²]
    has = d > 0
    z = np.where(has, np.log(np.where(has, s2, 1.0)) - bias, 0.0)
    w = np.where(has, 1.0 / tri, 0.0)
    lx = np.broadcast_to(np.log(x)[None, :], z.shape)
    m = has.sum(axis=1)
    sw = np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
    xm, zm = (w * lx).sum(1, keepdims=True) / sw, (w * z).sum(1, keepdims=True) / sw
    sxx = (w * (lx - xm) ** 2).sum(1, keepdims=True)
    slope = np.where((m[:, None] >= 2) & (sxx > 0), (w * (lx - xm) * (z - zm)).sum(1, keepdims=True)
                     / np.maximum(sxx, 1e-300), 0.0)
    trend = zm + slope * (lx - xm)                                   # log sigma0² at each size
    # the residuals' spread beyond sampling noise is the prior's variance trigamma(d0 / 2); two
    # parameters spent on the trend
    p = np.where(m >= 3, 2, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = (np.where(has, (z - trend) ** 2, 0.0).sum(1) / np.maximum(m - p, 1)
                  - np.where(has, tri, 0.0).sum(1) / np.maximum(m, 1))
    finite = (excess > 0) & (m > p)
    d0 = np.full(len(z), np.inf)
    if finite.any():
        d0[finite] = 2 * _trigamma_inverse(excess[finite])
    d0 = d0[:, None]
    h0 = np.where(np.isfinite(d0), d0 / 2, 1.0)
    s0 = np.exp(trend + np.where(np.isfinite(d0), digamma(h0) - np.log(h0), 0.0))
    own = np.where(has, s2, 0.0)
    with np.errstate(invalid="ignore"):
        mod = np.where(np.isfinite(d0), (d0 * s0 + d * own) / (d0 + d), s0)
    out = mod / k
    return np.where((m > 0)[:, None], out, np.nan)


def _profile(x, y, w, b):
    """(chi², a, c) of the best a > 0, 0 <= c <= C_MAX for each exponent: ``y`` (R, K) errors at
    sizes ``x`` (K,) with weights ``w`` (R, K), ``b`` (R, G) exponents. For a fixed b the model
    is linear in a and c: a weighted linear least-squares solution."""
    z = np.exp(-b[..., None] * np.log(x)[None, None, :])              # (R, G, K)
    yb = np.broadcast_to(y[:, None, :], z.shape)
    wb = np.broadcast_to(w[:, None, :], z.shape)
    sw = wb.sum(-1)
    zm, ym = (wb * z).sum(-1) / sw, (wb * yb).sum(-1) / sw
    zc = z - zm[..., None]
    a = (wb * zc * (yb - ym[..., None])).sum(-1) / np.maximum((wb * zc * zc).sum(-1), 1e-300)
    c = ym - a * zm
    zz = np.maximum((wb * z * z).sum(-1), 1e-300)
    for edge in (0.0, C_MAX):   # an intercept outside [0, C_MAX]: pinned to the edge, a refitted
        out = c < edge if edge == 0.0 else c > edge
        a = np.where(out, (wb * (yb - edge) * z).sum(-1) / zz, a)
        c = np.where(out, edge, c)
    sse = (wb * (a[..., None] * z + c[..., None] - yb) ** 2).sum(-1)
    return np.where(a > 0, sse, np.inf), a, c


def fit_many(sizes, errors, weights=None) -> np.ndarray:
    """(R, 3) parameters (a, b, c) of ``err = a n^-b + c`` weighted-least-squares fitted to each
    row of ``errors`` (R, K) at ``sizes`` (K,), weights (K,) or (R, K) (None: equal); a row of
    NaN where no decreasing curve fits.

    Why not a local optimiser (curve_fit): for a fixed b the best a and c are a linear
    least-squares solution, so profiling b over a grid (then a finer grid between the best
    point's neighbours) finds the global optimum within the bounds, for a thousand bootstrap
    resamples at once, in milliseconds. Sizes are scaled by the smallest while fitting."""
    x = np.asarray(sizes, float)
    y = np.atleast_2d(np.asarray(errors, float))
    w = np.ones(y.shape) if weights is None else np.broadcast_to(np.asarray(weights, float), y.shape)
    w = w / w.mean(axis=1, keepdims=True)   # the optimum is the same; the sums stay near 1
    n0 = x.min()
    x = x / n0
    b = np.broadcast_to(B_GRID, (len(y), len(B_GRID)))
    sse, _, _ = _profile(x, y, w, b)
    i = np.argmin(sse, axis=1)
    lo = B_GRID[np.maximum(i - 1, 0)]
    hi = B_GRID[np.minimum(i + 1, len(B_GRID) - 1)]
    b = lo[:, None] + (hi - lo)[:, None] * np.linspace(0, 1, 31)[None, :]
    sse, a, c = _profile(x, y, w, b)
    j = np.argmin(sse, axis=1)
    r = np.arange(len(y))
    best = np.stack([a[r, j] * n0 ** b[r, j], b[r, j], c[r, j]], axis=1)
    bad = ~np.isfinite(sse[r, j]) | ~np.isfinite(y).all(axis=1) | ~np.isfinite(w).all(axis=1)
    best[bad] = np.nan
    return best


def fit_curve(sizes, errors, weights=None) -> tuple[float, float, float] | None:
    """(a, b, c) of ``err = a n^-b + c`` fitted to per-size mean errors, or None."""
    if len(sizes) < 3:
        return None
    p = fit_many(sizes, np.asarray(errors, float)[None, :], weights)[0]
    return None if np.isnan(p).any() else (float(p[0]), float(p[1]), float(p[2]))


def invert(params, accuracy: float) -> float:
    """Real images at which the curve reaches ``accuracy`` (inf: above the curve's asymptote)."""
    a, b, c = params
    excess = (1.0 - accuracy) - c
    if excess <= 0:
        return math.inf
    return float((excess / a) ** (-1.0 / b))


@dataclass
class LackOfFit:
    chi2: float = math.nan
    df: int = 0
    p: float = math.nan
    resamples: int = 0

    @property
    def fails(self) -> bool:
        return math.isfinite(self.p) and self.p < LOF_LEVEL

    def text(self) -> str:
        """How the page and the table say it."""
        if self.df < 1:
            return "not testable (3 sizes leave no degrees of freedom; a 4th size would test the power law)"
        if not math.isfinite(self.p):
            return "not testable (no seed noise measured)"
        p = f"{self.p:.2g}" if self.p >= 1 / (self.resamples + 1) * 1.5 else f"< {1.5 / (self.resamples + 1):.1g}"
        verdict = "fails" if self.fails else "passes"
        return f"{verdict} a lack-of-fit test (chi² = {self.chi2:.1f} on {self.df} df, p = {p})"


def lack_of_fit(sizes, values: list[np.ndarray], params, rng: np.random.Generator,
                resamples: int = LOF_RESAMPLES) -> LackOfFit:
    """The weighted residuals of the fitted power law against the seed noise (see the module's
    docstring); ``values``: the seed accuracies of each size."""
    x = np.asarray(sizes, float)
    df = len(x) - 3
    var = seed_variances(values, x)
    if df < 1 or not np.isfinite(var).all():
        return LackOfFit(df=df)
    means = np.array([v.mean() for v in values])
    fit = 1.0 - power_law(x, *params)
    chi2 = float(((means - fit) ** 2 / var).sum())
    k = [len(v) for v in values]
    sd = np.sqrt(var * np.array(k))
    # k seeds per size around the fitted curve, drawn size by size (all resamples at once)
    sims = [fit[i] + sd[i] * rng.standard_normal((resamples, k[i])) for i in range(len(x))]
    sim_means = np.stack([s.mean(axis=1) for s in sims], axis=1)
    sim_var = _moderated(np.stack([s.var(axis=1, ddof=1) if s.shape[1] > 1 else np.full(resamples, np.nan)
                                   for s in sims], axis=1), np.array(k, float), x)
    p_sim = fit_many(x, 1.0 - sim_means, 1.0 / sim_var)
    ok = ~np.isnan(p_sim).any(axis=1)
    curves = 1.0 - power_law(x[None, :], p_sim[ok, :1], p_sim[ok, 1:2], p_sim[ok, 2:3])
    stats = ((sim_means[ok] - curves) ** 2 / sim_var[ok]).sum(axis=1)
    p = (1 + int((stats >= chi2).sum())) / (1 + len(stats))
    return LackOfFit(chi2, df, float(p), int(len(stats)))


class Monotone:
    """The second family: weighted isotonic means joined by PCHIP in log n (module docstring)."""

    def __init__(self, sizes, means, var):
        from scipy.interpolate import PchipInterpolator
        from sklearn.isotonic import IsotonicRegression

        w = None if not np.isfinite(var).all() else 1.0 / np.asarray(var, float)
        x = np.log(np.asarray(sizes, float))
        self.y = IsotonicRegression(increasing=True).fit_transform(x, np.asarray(means, float), sample_weight=w)
        self.f = PchipInterpolator(x, self.y)
        self.grid = np.linspace(x[0], x[-1], 4001)
        self.on_grid = np.maximum.accumulate(self.f(self.grid))   # monotone already; rounding aside

    def accuracy(self, n) -> np.ndarray:
        return self.f(np.log(np.asarray(n, float)))

    def invert(self, accuracy: float) -> float:
        """The fewest real images at which the interpolation reaches ``accuracy`` (NaN outside
        the measured range: this family has nothing to say there)."""
        g = self.on_grid
        if not (g[0] <= accuracy <= g[-1]):
            return math.nan
        i = int(np.searchsorted(g, accuracy, side="left"))
        if i == 0:
            return float(np.exp(self.grid[0]))
        t = (accuracy - g[i - 1]) / (g[i] - g[i - 1]) if g[i] > g[i - 1] else 1.0
        return float(np.exp(self.grid[i - 1] + t * (self.grid[i] - self.grid[i - 1])))
