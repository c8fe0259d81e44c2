"""How a colour looks, for checking palettes: WCAG contrast against a background, colour-vision deficiency
simulated (Machado, Oliveira & Fernandes 2009) and the perceived difference of two colours (CIEDE2000).

Colours are "#rrggbb" sRGB strings; every function is pure NumPy.
"""
from __future__ import annotations

import numpy as np

# Machado et al. 2009, severity 1.0 (dichromacy), on linear RGB. Each row sums to 1: greys stay grey.
DEFICIENCIES = {
    "protanopia": np.array([[0.152286, 1.052583, -0.204868],
                            [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968],
                              [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779],
                            [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]]),
}
# sRGB (linear) → CIE XYZ, D65 white; the white point the Lab conversion divides by
_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                 [0.2126729, 0.7151522, 0.0721750],
                 [0.0193339, 0.1191920, 0.9503041]])
_WHITE = _XYZ.sum(axis=1)


def linear_rgb(colour: str) -> np.ndarray:
    """The sRGB transfer function undone: "#rrggbb" → linear RGB in [0, 1], shape (3,)."""
    c = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def luminance(colour: str) -> float:
    """WCAG relative luminance (0 = black, 1 = white)."""
    return float(_XYZ[1] @ linear_rgb(colour))


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio, 1 (same luminance) to 21 (black on white); ≥ 3 for graphics (WCAG 1.4.11)."""
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def lab(rgb_linear: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of linear RGB values, shape (..., 3)."""
    t = (np.asarray(rgb_linear) @ _XYZ.T) / _WHITE
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def seen(colour: str, deficiency: str | None = None) -> np.ndarray:
    """The colour's L*a*b* as a viewer with `deficiency` (a key of DEFICIENCIES; None = normal vision) sees it."""
    rgb = linear_rgb(colour)
    if deficiency is not None:
        rgb = np.clip(DEFICIENCIES[deficiency] @ rgb, 0, 1)
    return lab(rgb)


def delta_e(lab1: np.ndarray, lab2: np.ndarray) -> float:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005); about 1 is just noticeable side by side."""
    (l1, a1, b1), (l2, a2, b2) = np.asarray(lab1, float), np.asarray(lab2, float)
    c_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_bar ** 7 / (c_bar ** 7 + 25 ** 7)))
    a1, a2 = a1 * (1 + g), a2 * (1 + g)
    c1, c2 = np.hypot(a1, b1), np.hypot(a2, b2)
    h1, h2 = (np.degrees(np.arctan2(b, a)) % 360 if c else 0.0 for a, b, c in ((a1, b1, c1), (a2, b2, c2)))
    dh = 0.0 if c1 * c2 == 0 else (h2 - h1 + 180) % 360 - 180
    d_l, d_c, d_h = l2 - l1, c2 - c1, 2 * np.sqrt(c1 * c2) * np.sin(np.radians(dh / 2))
    l_bar, c_bar = (l1 + l2) / 2, (c1 + c2) / 2
    if c1 * c2 == 0:
        h_bar = h1 + h2
    elif abs(h1 - h2) <= 180:
        h_bar = (h1 + h2) / 2
    else:
        h_bar = (h1 + h2 + 360) / 2 if h1 + h2 < 360 else (h1 + h2 - 360) / 2
    t = (1 - 0.17 * np.cos(np.radians(h_bar - 30)) + 0.24 * np.cos(np.radians(2 * h_bar))
         + 0.32 * np.cos(np.radians(3 * h_bar + 6)) - 0.20 * np.cos(np.radians(4 * h_bar - 63)))
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / np.sqrt(20 + (l_bar - 50) ** 2)
    s_c, s_h = 1 + 0.045 * c_bar, 1 + 0.015 * c_bar * t
    r_t = (-2 * np.sqrt(c_bar ** 7 / (c_bar ** 7 + 25 ** 7))
           * np.sin(np.radians(60 * np.exp(-(((h_bar - 275) / 25) ** 2)))))
    return float(np.sqrt((d_l / s_l) ** 2 + (d_c / s_c) ** 2 + (d_h / s_h) ** 2 + r_t * (d_c / s_c) * (d_h / s_h)))


def min_difference(colours: list[str]) -> tuple[float, str | None, str, str]:
    """The smallest CIEDE2000 difference between any two of `colours` under normal vision and each simulated
    dichromacy: (ΔE, the deficiency (None = normal vision), the two colours)."""
    worst = (np.inf, None, "", "")
    for deficiency in (None, *DEFICIENCIES):
        labs = [seen(c, deficiency) for c in colours]
        for i in range(len(colours)):
            for j in range(i + 1, len(colours)):
                d = delta_e(labs[i], labs[j])
                if d < worst[0]:
                    worst = (d, deficiency, colours[i], colours[j])
    return worst
