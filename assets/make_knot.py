"""Write assets/knot.obj: a trefoil knot swept by a tube with five twisted grooves (a rope).

A closed, manifold, genus-1 triangle mesh with outward normals: the SDF task's default target
and its tests' mesh. Made here from formulas, so it carries no third-party licence (CC0).
Standard library only: python3 assets/make_knot.py
"""
import math
import os

ALONG, AROUND = 200, 30   # samples along the knot and around the tube
TUBE, GROOVE, TWIST = 0.42, 0.12, 12  # tube radius, groove depth (fraction), twists per loop


def curve(t):
    return (math.sin(t) + 2 * math.sin(2 * t), math.cos(t) - 2 * math.cos(2 * t), -math.sin(3 * t))


def sub(a, b):
    return tuple(x - y for x, y in zip(a, b))


def cross(a, b):
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def unit(a):
    n = math.sqrt(sum(x * x for x in a))
    return tuple(x / n for x in a)


vertices = []
for i in range(ALONG):
    t = 2 * math.pi * i / ALONG
    h = 1e-4
    p = curve(t)
    tangent = unit(sub(curve(t + h), curve(t - h)))
    # Frenet frame: the trefoil's curvature never vanishes, and the frame closes up after one loop.
    second = sub(sub(curve(t + h), p), sub(p, curve(t - h)))
    binormal = unit(cross(tangent, second))
    normal = cross(binormal, tangent)
    for j in range(AROUND):
        a = 2 * math.pi * j / AROUND
        r = TUBE * (1 + GROOVE * math.cos(5 * a + TWIST * t))
        vertices.append(tuple(p[k] + r * (math.cos(a) * normal[k] + math.sin(a) * binormal[k]) for k in range(3)))

triangles = []
for i in range(ALONG):
    for j in range(AROUND):
        a = i * AROUND + j
        b = ((i + 1) % ALONG) * AROUND + j
        c = ((i + 1) % ALONG) * AROUND + (j + 1) % AROUND
        d = i * AROUND + (j + 1) % AROUND
        triangles += [(a, b, c), (a, c, d)]

# Outward normals: the signed volume must be positive.
volume = sum(
    sum(x * y for x, y in zip(vertices[t[0]], cross(vertices[t[1]], vertices[t[2]]))) for t in triangles
) / 6
if volume < 0:
    triangles = [(t[0], t[2], t[1]) for t in triangles]

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "knot.obj")
with open(path, "w") as f:
    f.write(f"# trefoil knot rope, {len(vertices)} vertices, {len(triangles)} triangles; made by make_knot.py (CC0)\n")
    for v in vertices:
        f.write("v {:.5f} {:.5f} {:.5f}\n".format(*v))
    for t in triangles:
        f.write("f {} {} {}\n".format(*(i + 1 for i in t)))
print(f"wrote {path}: {len(vertices)} vertices, {len(triangles)} triangles, volume {abs(volume):.3f}")
