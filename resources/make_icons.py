#!/usr/bin/env python3
"""Draws the tray icons: resources/tray-{green,blue,yellow,red}.ico.

Each icon is a coloured disc with a glyph, so the states differ in shape as well as colour
(for colour-blind operators):

    green   connected and idle      a check mark
    blue    executing a job         a "play" triangle
    yellow  connecting/reconnecting three dots
    red     disconnected or refused a bar ("no entry")

Each .ico holds 16, 20, 24 and 32 pixel images (100%, 125%, 150% and 200% display scaling) (32-bit BGRA bitmaps with an AND mask,
the format every Windows version and Wine read). Drawing is 4x4 supersampled for anti-aliasing.
The output is deterministic: running the script again gives the same bytes. The robot embeds
the files (src/tray.rs, include_bytes!), so run this only to change the icons, then commit them.

Usage: python3 resources/make_icons.py   (from anywhere; writes beside this script)
"""

import math
import os
import struct

SIZES = (16, 20, 24, 32)
SUPERSAMPLE = 4

# (name, disc colour, glyph colour, glyph)
ICONS = (
    ("green", (0x2E, 0x9D, 0x3A), (0xFF, 0xFF, 0xFF), "check"),
    ("blue", (0x1F, 0x6F, 0xD1), (0xFF, 0xFF, 0xFF), "play"),
    ("yellow", (0xF2, 0xB8, 0x0F), (0x3A, 0x2C, 0x00), "dots"),
    ("red", (0xD3, 0x2F, 0x2F), (0xFF, 0xFF, 0xFF), "bar"),
)


def seg_dist(px, py, ax, ay, bx, by):
    """Distance from point p to segment ab."""
    dx, dy = bx - ax, by - ay
    t = ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)
    t = max(0.0, min(1.0, t))
    cx, cy = ax + t * dx, ay + t * dy
    return math.hypot(px - cx, py - cy)


def in_triangle(px, py, a, b, c):
    def side(p1, p2):
        return (px - p2[0]) * (p1[1] - p2[1]) - (p1[0] - p2[0]) * (py - p2[1])

    d1, d2, d3 = side(a, b), side(b, c), side(c, a)
    neg = d1 < 0 or d2 < 0 or d3 < 0
    pos = d1 > 0 or d2 > 0 or d3 > 0
    return not (neg and pos)


def in_glyph(glyph, x, y):
    """x, y in unit coordinates (0..1, y down)."""
    if glyph == "check":
        w = 0.075
        return (seg_dist(x, y, 0.28, 0.52, 0.43, 0.67) <= w
                or seg_dist(x, y, 0.43, 0.67, 0.72, 0.35) <= w)
    if glyph == "play":
        return in_triangle(x, y, (0.37, 0.28), (0.37, 0.72), (0.74, 0.50))
    if glyph == "dots":
        return any(math.hypot(x - cx, y - 0.5) <= 0.085 for cx in (0.28, 0.5, 0.72))
    if glyph == "bar":
        return 0.25 <= x <= 0.75 and 0.375 <= y <= 0.625
    raise ValueError(glyph)


def render(size, disc, ink, glyph):
    """Rows of (b, g, r, a), top row first."""
    rows = []
    radius = 0.47
    ring = max(0.06, 1.0 / size)  # darker rim, about one pixel wide at 16 px
    edge = tuple(int(c * 0.62) for c in disc)
    n = SUPERSAMPLE
    for py in range(size):
        row = []
        for px in range(size):
            acc = [0.0, 0.0, 0.0, 0.0]
            for sy in range(n):
                for sx in range(n):
                    x = (px + (sx + 0.5) / n) / size
                    y = (py + (sy + 0.5) / n) / size
                    d = math.hypot(x - 0.5, y - 0.5)
                    if d > radius:
                        continue
                    if in_glyph(glyph, x, y):
                        colour = ink
                    elif d > radius - ring:
                        colour = edge
                    else:
                        colour = disc
                    acc[0] += colour[0]
                    acc[1] += colour[1]
                    acc[2] += colour[2]
                    acc[3] += 1.0
            cover = acc[3]
            if cover == 0:
                row.append((0, 0, 0, 0))
            else:
                r, g, b = (round(acc[i] / cover) for i in range(3))
                row.append((b, g, r, round(255 * cover / (n * n))))
        rows.append(row)
    return rows


def bmp_image(size, rows):
    """A 32-bit ICO image: BITMAPINFOHEADER, bottom-up BGRA, AND mask."""
    header = struct.pack("<IiiHHIIiiII", 40, size, size * 2, 1, 32, 0, 0, 0, 0, 0, 0)
    xor = b"".join(bytes(p) for row in reversed(rows) for p in row)
    mask_stride = ((size + 31) // 32) * 4
    mask = bytearray()
    for row in reversed(rows):
        line = bytearray(mask_stride)
        for x, p in enumerate(row):
            if p[3] == 0:
                line[x // 8] |= 0x80 >> (x % 8)
        mask += line
    return header + xor + bytes(mask)


def ico(images):
    out = struct.pack("<HHH", 0, 1, len(images))
    offset = 6 + 16 * len(images)
    entries, blobs = b"", b""
    for size, data in images:
        dim = 0 if size >= 256 else size
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset)
        blobs += data
        offset += len(data)
    return out + entries + blobs


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    for name, disc, ink, glyph in ICONS:
        images = [(s, bmp_image(s, render(s, disc, ink, glyph))) for s in SIZES]
        path = os.path.join(here, f"tray-{name}.ico")
        with open(path, "wb") as f:
            f.write(ico(images))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
