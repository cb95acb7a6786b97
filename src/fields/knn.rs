//! Exact k-nearest-neighbour search over a fixed set of 2-D or 3-D points (kernel centres).
//!
//! A balanced kd-tree: each node is the median of its range along the axis of widest spread,
//! stored implicitly in one permuted array. Queries run in parallel on the CPU; NeuRBF's
//! centres are frozen, so one tree serves every query of a run.

use rayon::prelude::*;

/// Coordinates per point at most (the search keeps per-axis offsets in a fixed array).
const MAX_DIMS: usize = 4;

pub struct KdTree {
    dims: usize,
    /// Points in tree order, flattened `[n, dims]`.
    points: Vec<f32>,
    /// The original index of each point in tree order.
    ids: Vec<u32>,
    /// Split axis of the node at each position (the middle of its range).
    axes: Vec<u8>,
}

impl KdTree {
    /// `points` is flattened `[n, dims]`.
    pub fn new(points: &[f32], dims: usize) -> Self {
        assert!(dims > 0 && dims <= MAX_DIMS && points.len().is_multiple_of(dims));
        let n = points.len() / dims;
        let mut ids: Vec<u32> = (0..n as u32).collect();
        let mut axes = vec![0u8; n];
        build(points, dims, &mut ids, &mut axes, 0);
        let ordered = ids.iter().flat_map(|&i| points[i as usize * dims..(i as usize + 1) * dims].iter().copied()).collect();
        Self { dims, points: ordered, ids, axes }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The `k` nearest points to `query`, nearest first, as `(squared distance, index)`.
    pub fn nearest(&self, query: &[f32], k: usize) -> Vec<(f32, u32)> {
        self.nearest_within(query, k, f32::INFINITY)
    }

    /// The `k` nearest points closer than `sqrt(limit)` (fewer when fewer are that close).
    /// A limit keeps queries far from every point cheap: without one, a query at the centre of
    /// a sphere of points is nearly equidistant from all of them and visits them all.
    pub fn nearest_within(&self, query: &[f32], k: usize, limit: f32) -> Vec<(f32, u32)> {
        let mut best = Vec::with_capacity(k + 1);
        if k > 0 {
            let mut offsets = [0.0f32; MAX_DIMS];
            self.search(query, k, limit, 0, self.len(), 0.0, &mut offsets, &mut best);
        }
        best
    }

    /// Indices `[n, k]` of the `k` nearest points to each of `queries` (`[n, dims]`), in parallel.
    pub fn nearest_all(&self, queries: &[f32], k: usize) -> Vec<u32> {
        self.nearest_all_within(queries, k, f32::INFINITY)
    }

    /// `nearest_all` among the points closer than `sqrt(limit)`; a query with fewer than `k` of
    /// them gets the nearest it has, then other points (in index order) that are not that close.
    pub fn nearest_all_within(&self, queries: &[f32], k: usize, limit: f32) -> Vec<u32> {
        assert!(k <= self.len(), "asked for {k} neighbours among {} points", self.len());
        let mut out = vec![0u32; queries.len() / self.dims * k];
        out.par_chunks_mut(k * 1024).zip(queries.par_chunks(self.dims * 1024)).for_each(|(out, queries)| {
            for (o, q) in out.chunks_mut(k).zip(queries.chunks(self.dims)) {
                let found = self.nearest_within(q, k, limit);
                let mut fill = (0..self.len() as u32).filter(|i| !found.iter().any(|f| f.1 == *i));
                for (j, slot) in o.iter_mut().enumerate() {
                    *slot = match found.get(j) {
                        Some(&(_, id)) => id,
                        None => fill.next().unwrap_or(0),
                    };
                }
            }
        });
        out
    }

    /// Search the subtree `lo..hi`, whose region is at least `bound` (squared) from `q`;
    /// `offsets[a]` is the part of that bound along axis `a` (Arya and Mount's incremental
    /// distance), so far-away queries prune whole regions rather than single split planes.
    #[allow(clippy::too_many_arguments)]
    fn search(&self, q: &[f32], k: usize, limit: f32, lo: usize, hi: usize, bound: f32, offsets: &mut [f32; MAX_DIMS], best: &mut Vec<(f32, u32)>) {
        let worst = |best: &Vec<(f32, u32)>| if best.len() == k { best[k - 1].0.min(limit) } else { limit };
        if lo >= hi || bound >= worst(best) {
            return;
        }
        let mid = (lo + hi) / 2;
        let p = &self.points[mid * self.dims..(mid + 1) * self.dims];
        let d2: f32 = p.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
        if d2 < worst(best) {
            let at = best.partition_point(|&(d, _)| d <= d2);
            best.insert(at, (d2, self.ids[mid]));
            best.truncate(k);
        }
        let axis = self.axes[mid] as usize;
        let diff = q[axis] - p[axis];
        let (near, far) = if diff < 0.0 { ((lo, mid), (mid + 1, hi)) } else { ((mid + 1, hi), (lo, mid)) };
        self.search(q, k, limit, near.0, near.1, bound, offsets, best);
        let old = offsets[axis];
        let far_bound = bound - old * old + diff * diff;
        offsets[axis] = diff;
        self.search(q, k, limit, far.0, far.1, far_bound, offsets, best);
        offsets[axis] = old;
    }
}

/// Order `ids` so that each range's middle is its median along the axis of widest spread.
fn build(points: &[f32], dims: usize, ids: &mut [u32], axes: &mut [u8], offset: usize) {
    if ids.len() <= 1 {
        return;
    }
    let coord = |i: u32, a: usize| points[i as usize * dims + a];
    let axis = (0..dims)
        .max_by(|&a, &b| {
            let spread = |a| {
                let (lo, hi) = ids.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &i| (lo.min(coord(i, a)), hi.max(coord(i, a))));
                hi - lo
            };
            spread(a).total_cmp(&spread(b))
        })
        .unwrap_or(0);
    let mid = ids.len() / 2;
    ids.select_nth_unstable_by(mid, |&a, &b| coord(a, axis).total_cmp(&coord(b, axis)));
    axes[offset + mid] = axis as u8;
    let (left, right) = ids.split_at_mut(mid);
    build(points, dims, left, axes, offset);
    build(points, dims, &mut right[1..], axes, offset + mid + 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    fn brute_force(points: &[f32], dims: usize, q: &[f32], k: usize) -> Vec<f32> {
        let mut d: Vec<f32> = points.chunks(dims).map(|p| p.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum()).collect();
        d.sort_by(f32::total_cmp);
        d.truncate(k);
        d
    }

    /// Every query's neighbours match brute force (compared by distance, so ties cannot flake).
    #[test]
    fn matches_brute_force_in_2d_and_3d() {
        let mut rng = StdRng::seed_from_u64(7);
        for dims in [2, 3] {
            for n in [1usize, 5, 300, 2000] {
                // Clustered points with duplicates, the hard case for splits.
                let mut points: Vec<f32> = (0..n * dims).map(|_| (rng.random::<f32>() * 8.0).floor() / 8.0).collect();
                points.extend((0..n * dims).map(|_| rng.random::<f32>()));
                let tree = KdTree::new(&points, dims);
                let k = 8.min(2 * n);
                let queries: Vec<f32> = (0..200 * dims).map(|_| rng.random::<f32>() * 1.2 - 0.1).collect();
                let all = tree.nearest_all(&queries, k);
                for (qi, q) in queries.chunks(dims).enumerate() {
                    let want = brute_force(&points, dims, q, k);
                    let got: Vec<f32> = tree.nearest(q, k).iter().map(|p| p.0).collect();
                    assert_eq!(got.len(), k);
                    for (g, w) in got.iter().zip(&want) {
                        assert!((g - w).abs() <= 1e-6, "dims {dims} n {n}: {got:?} vs {want:?}");
                    }
                    let ids = &all[qi * k..(qi + 1) * k];
                    for (id, w) in ids.iter().zip(&want) {
                        let p = &points[*id as usize * dims..(*id as usize + 1) * dims];
                        let d: f32 = p.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
                        assert!((d - w).abs() <= 1e-6);
                    }
                }
            }
        }
    }

    #[test]
    fn limited_search_keeps_the_close_ones_and_fills_with_distinct_far_ones() {
        let mut rng = StdRng::seed_from_u64(3);
        let points: Vec<f32> = (0..3000).map(|_| rng.random::<f32>()).collect();
        let tree = KdTree::new(&points, 3);
        let queries: Vec<f32> = (0..300).map(|_| rng.random::<f32>() * 1.4 - 0.2).collect();
        let (k, limit) = (6, 0.01f32);
        let got = tree.nearest_all_within(&queries, k, limit);
        for (q, ids) in queries.chunks(3).zip(got.chunks(k)) {
            let d2 = |i: u32| (0..3).map(|a| (points[i as usize * 3 + a] - q[a]).powi(2)).sum::<f32>();
            let close: Vec<f32> = brute_force(&points, 3, q, k).into_iter().filter(|&d| d < limit).collect();
            let mut got_close: Vec<f32> = ids.iter().map(|&i| d2(i)).filter(|&d| d < limit).collect();
            got_close.sort_by(f32::total_cmp);
            assert_eq!(got_close, close, "{q:?}");
            let mut unique = ids.to_vec();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), k, "repeated neighbours {ids:?}");
        }
    }
}
