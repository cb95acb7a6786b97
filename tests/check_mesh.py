#!/usr/bin/env python3
"""An independent reader's view of a mesh: load it with trimesh (which merges vertices at the
same position, as MeshLab and Blender do) and print JSON with what makes a mesh unclean:
edges not shared by exactly two faces, zero-area faces and connected pieces.

    python3 tests/check_mesh.py MESH.ply
"""
import json
import sys

import numpy as np
import trimesh

mesh = trimesh.load(sys.argv[1], process=True, force="mesh")
edges = mesh.edges_sorted
_, counts = np.unique(edges, axis=0, return_counts=True)
pieces = trimesh.graph.connected_components(mesh.face_adjacency, nodes=np.arange(len(mesh.faces)), min_len=1)
print(json.dumps({
    "vertices": len(mesh.vertices),
    "faces": len(mesh.faces),
    "boundary_edges": int((counts == 1).sum()),
    "non_manifold_edges": int((counts > 2).sum()),
    "zero_area_faces": int((mesh.area_faces <= 1e-12).sum()),
    "pieces": len(pieces),
    "watertight": bool(mesh.is_watertight),
    "vertex_colours": mesh.visual.kind == "vertex",
}))
