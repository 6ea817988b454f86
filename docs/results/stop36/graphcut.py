"""GrabCut restricted to the undecided band: OpenCV's energy, a graph of the band's pixels only.

Stop 36's candidate for the edge refinement (``napari_spbox/core/graphcut.py`` in commit bcff423,
where ``refine_edges`` called it); it did not ship (docs/experiments/stop36_fast_refine.md). Kept
as the record of what was measured: it needs ``pip install PyMaxflow``.

OpenCV's ``cv2.grabCut`` builds its graph over every pixel of the image, also the pixels its mask
already fixes, and so spends most of an edge refinement's time on pixels whose label cannot
change. :func:`grabcut_band` minimises the same energy (Rother et al. 2004, as OpenCV implements
it: five-component colour mixtures per side, contrast-sensitive 8-neighbour smoothness with
gamma 50) with a graph whose nodes are the undecided pixels alone; a fixed neighbour enters as a
terminal weight. The mixtures are fitted on a regular subsample of the pixels, OpenCV's k-means
(k-means++ seeds, 10 iterations) then one relabelling step, as one GrabCut iteration does. The
maximum flow is PyMaxflow's (Boykov-Kolmogorov, the algorithm OpenCV uses too).
"""

from __future__ import annotations

import numpy as np

#: OpenCV GrabCut's labels: fixed background / foreground, probable background / foreground
BGD, FGD, PR_BGD, PR_FGD = 0, 1, 2, 3
GAMMA = 50.0  # OpenCV's smoothness weight
COMPONENTS = 5  # colour-mixture components per side, as OpenCV
_EPS = 0.01  # added to each covariance's diagonal (OpenCV's ``variance``)
_MIN_SAMPLES = 10 * COMPONENTS  # a side with fewer subsampled pixels learns from all of its pixels

# neighbour offsets (drow, dcol) and their distance weights: right, down, down-right, down-left
_NEIGHBOURS = ((0, 1, 1.0), (1, 0, 1.0), (1, 1, 2**-0.5), (1, -1, 2**-0.5))


def _pairs(h: int, w: int, dr: int, dc: int):
    """Slices of the first and second pixel of each pair ``(r, c)``, ``(r + dr, c + dc)``."""
    c0, c1 = (slice(0, w - dc), slice(dc, w)) if dc >= 0 else (slice(-dc, w), slice(0, w + dc))
    return (slice(0, h - dr), c0), (slice(dr, h), c1)


def smoothness_weights(img: np.ndarray) -> list:
    """GrabCut's contrast-sensitive pairwise weights for the four forward neighbour directions.

    ``gamma / dist * exp(-beta * |z_p - z_q|^2)`` with ``beta = 1 / (2 <|z_p - z_q|^2>)`` over all
    8-neighbour pairs (OpenCV's ``calcBeta`` / ``calcNWeights``). They depend on the image alone,
    so a caller can compute them once per window and pass them to :func:`grabcut_band`.

    Parameters
    ----------
    img : numpy.ndarray
        ``(H, W, 3)`` colour image (any numeric type).

    Returns
    -------
    list of numpy.ndarray
        One float32 array per direction (right, down, down-right, down-left), each holding the
        weight of the pair that starts at that pixel.

    Examples
    --------
    Across a colour edge the weight (the cost of cutting there) drops:

    >>> img = np.zeros((2, 3, 3), np.uint8); img[:, 2] = 255
    >>> smoothness_weights(img)[0].round(1)  # right neighbours
    array([[50. , 12.6],
           [50. , 12.6]], dtype=float32)
    """
    x = np.asarray(img, dtype=np.float32)
    h, w = x.shape[:2]
    sq = []
    for dr, dc, _ in _NEIGHBOURS:
        a, b = _pairs(h, w, dr, dc)
        d = x[a] - x[b]
        sq.append(np.einsum("ijk,ijk->ij", d, d))
    total = sum(float(s.sum(dtype=np.float64)) for s in sq)
    count = sum(s.size for s in sq)
    beta = 0.0 if total <= 0 else count / (2.0 * total)
    return [
        (GAMMA * f * np.exp(-beta * s)).astype(np.float32)
        for s, (_, _, f) in zip(sq, _NEIGHBOURS, strict=True)
    ]


class _Mixture:
    """A Gaussian mixture of colours: fitted by k-means, then one relabelling step (as GrabCut)."""

    def __init__(self, samples: np.ndarray, k: int = COMPONENTS):
        import cv2

        k = max(1, min(k, len(samples)))
        if k == 1:  # (OpenCV's k-means would read a single sample as three 1-D ones)
            labels = np.zeros(len(samples), np.int32)
        else:
            criteria = (cv2.TERM_CRITERIA_MAX_ITER, 10, 0.0)
            _, labels, _ = cv2.kmeans(samples, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
        self._fit(samples, labels.ravel(), k)
        self._fit(samples, self._log_terms(samples).argmax(0), k)

    def _fit(self, x: np.ndarray, labels: np.ndarray, k: int) -> None:
        self.terms = []
        for j in range(k):
            xj = x[labels == j].astype(np.float64)
            if len(xj) == 0:
                continue
            cov = np.atleast_2d(np.cov(xj.T, bias=True)) + _EPS * np.eye(3)
            # whitening A with A A^T = cov^-1: |x A - mean A|^2 is the Mahalanobis distance
            white = np.linalg.cholesky(np.linalg.inv(cov))
            log_scale = np.log(len(xj) / len(x)) - 0.5 * np.log(np.linalg.det(cov))
            self.terms.append(
                (white.astype(np.float32), (xj.mean(0) @ white).astype(np.float32), log_scale)
            )

    def _log_terms(self, x: np.ndarray) -> np.ndarray:
        """``log(pi_k N(x | k))`` up to a shared constant, one row per component."""
        out = np.empty((len(self.terms), len(x)), np.float32)
        for row, (white, centre, log_scale) in zip(out, self.terms, strict=True):
            y = x @ white
            y -= centre
            np.einsum("ij,ij->i", y, y, out=row)
            row *= -0.5
            row += np.float32(log_scale)
        return out

    def cost(self, x: np.ndarray) -> np.ndarray:
        """``-log p(x)`` (up to the shared constant), GrabCut's data term."""
        terms = self._log_terms(x)
        top = terms.max(0)
        terms -= top
        np.exp(terms, out=terms)
        return -(top + np.log(terms.sum(0))).astype(np.float64)


def grabcut_band(
    img: np.ndarray,
    labels: np.ndarray,
    weights: list | None = None,
    iterations: int = 1,
    subsample: int = 2,
) -> np.ndarray:
    """GrabCut that decides only the probable pixels of ``labels``.

    Parameters
    ----------
    img : numpy.ndarray
        ``(H, W, 3)`` colour image.
    labels : numpy.ndarray
        ``(H, W)`` uint8 in OpenCV's GrabCut labels (:data:`BGD`, :data:`FGD`, :data:`PR_BGD`,
        :data:`PR_FGD`). Fixed pixels keep their label; both fixed and probable ones train the
        colour models by their current side.
    weights : list of numpy.ndarray, optional
        :func:`smoothness_weights` of ``img``, when the caller has them cached.
    iterations : int
        GrabCut iterations: each learns the colour models from the previous one's sides.
    subsample : int
        The colour models learn from every ``subsample``-th pixel in each direction.

    Returns
    -------
    numpy.ndarray
        Bool ``(H, W)`` foreground. ``labels`` itself is left unchanged. With no pixel on one side
        there is no colour model to compare against, and ``labels``' own sides are returned.

    Examples
    --------
    A dark object, a probable band on both sides of the true edge between columns 2 and 3:

    >>> img = np.zeros((3, 6, 3), np.uint8); img[:, 3:] = 200
    >>> img[0, :3] = 20; img[0, 3:] = 180  # some colour spread for the models
    >>> labels = np.array([[BGD, PR_BGD, PR_FGD, PR_FGD, PR_FGD, FGD]] * 3, np.uint8)
    >>> grabcut_band(img, labels).astype(int)
    array([[0, 0, 0, 1, 1, 1],
           [0, 0, 0, 1, 1, 1],
           [0, 0, 0, 1, 1, 1]])
    """
    import cv2

    labels = np.asarray(labels)
    fg = (labels == FGD) | (labels == PR_FGD)
    band = (labels == PR_BGD) | (labels == PR_FGD)
    if fg.all() or not fg.any() or not band.any():
        return fg
    h, w = labels.shape
    colours = np.asarray(img, dtype=np.float32).reshape(h, w, 3)
    step = (slice(None, None, subsample),) * 2
    x_s = colours[step]
    index = np.full((h, w), -1, np.int64)
    index[band] = np.arange(band.sum())
    weights = smoothness_weights(colours) if weights is None else weights
    graph_edges = _band_edges(index, labels, weights)
    cv2.setRNGSeed(0)  # k-means draws from OpenCV's global RNG: the same input, the same mask
    for _ in range(iterations):
        if fg.all() or not fg.any():
            break  # no colour model left to compare against
        fg_s = fg[step]
        if min(fg_s.sum(), fg_s.size - fg_s.sum()) >= _MIN_SAMPLES:
            fg_model, bg_model = _Mixture(x_s[fg_s]), _Mixture(x_s[~fg_s])
        else:  # a side too small for the subsample (a nucleus in its window): every pixel
            fg_model, bg_model = _Mixture(colours[fg]), _Mixture(colours[~fg])
        fg = fg.copy()
        fg[band] = _cut(colours[band], fg_model, bg_model, *graph_edges)
    return fg


def _band_edges(index: np.ndarray, labels: np.ndarray, weights: list):
    """The band's pairwise edges (heads, tails, capacities) and the terminal weights its fixed
    neighbours add (to the source: fixed foreground; to the sink: fixed background)."""
    h, w = index.shape
    n = int(index.max()) + 1
    fixed_fg, fixed_bg = labels == FGD, labels == BGD
    heads, tails, caps = [], [], []
    to_source, to_sink = np.zeros(n), np.zeros(n)
    for (dr, dc, _), wmap in zip(_NEIGHBOURS, weights, strict=True):
        a, b = _pairs(h, w, dr, dc)
        ia, ib = index[a], index[b]
        both = (ia >= 0) & (ib >= 0)
        heads.append(ia[both])
        tails.append(ib[both])
        caps.append(wmap[both])
        # an undecided pixel beside a fixed one: the pair's weight becomes a terminal weight
        for node, f_fg, f_bg in ((ia, fixed_fg[b], fixed_bg[b]), (ib, fixed_fg[a], fixed_bg[a])):
            m = (node >= 0) & f_fg
            to_source += np.bincount(node[m], wmap[m], minlength=n)
            m = (node >= 0) & f_bg
            to_sink += np.bincount(node[m], wmap[m], minlength=n)
    heads, tails, caps = (np.concatenate(v) for v in (heads, tails, caps))
    return heads, tails, caps, to_source, to_sink


def _cut(x_band, fg_model, bg_model, heads, tails, caps, to_source, to_sink) -> np.ndarray:
    """Minimum cut over the band: True where a band pixel ends on the foreground (source) side."""
    import maxflow

    n = len(x_band)
    graph = maxflow.Graph[float](n, len(caps))
    nodes = graph.add_nodes(n)
    graph.add_edges(nodes[heads], nodes[tails], caps, caps)
    # source = foreground: a node cut from the source pays its background cost, and vice versa
    graph.add_grid_tedges(nodes, to_source + bg_model.cost(x_band), to_sink + fg_model.cost(x_band))
    graph.maxflow()
    return ~graph.get_grid_segments(nodes)
