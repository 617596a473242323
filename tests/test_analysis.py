"""Motif counts on graphs counted by hand, and the significance profile."""
import numpy as np
import pytest

from bpsr_jax import analysis


def _adj(n, edges):
  a = np.zeros((n, n))
  for k, i in edges:
    a[k, i] = 1.0
  return a


@pytest.mark.parametrize("edges,motif", [
    ([(0, 1), (0, 2)], "021D"),            # out-star
    ([(1, 0), (2, 0)], "021U"),            # in-star
    ([(0, 1), (1, 2)], "021C"),            # chain
    ([(0, 1), (1, 2), (0, 2)], "030T"),    # feed-forward loop
    ([(0, 1), (1, 2), (2, 0)], "030C"),    # cycle
    ([(0, 1), (1, 0), (0, 2), (2, 0)], "201"),
    ([(a, b) for a in range(3) for b in range(3) if a != b], "300"),
])
def test_single_triad(edges, motif):
  counts = analysis.motif_counts(_adj(3, edges))
  assert counts[motif] == 1
  assert sum(counts.values()) == 1
  assert list(counts) == list(analysis.MOTIFS) and len(counts) == 13


def test_four_cycle_and_complete_graph():
  # 0->1->2->3->0: each of the 4 triples is a chain a->b->c.
  assert analysis.motif_counts(_adj(4, [(0, 1), (1, 2), (2, 3), (3, 0)]))["021C"] == 4
  full = np.ones((4, 4))  # self-loops on the diagonal are ignored
  counts = analysis.motif_counts(full)
  assert counts["300"] == 4 and sum(counts.values()) == 4
  # Weights: an edge is a non-zero entry; negative weights count, the threshold too.
  w = np.array([[0, -0.3, 0.01], [0, 0, 0], [0, 0, 0]])
  assert analysis.motif_counts(w)["021D"] == 1
  assert sum(analysis.motif_counts(w, threshold=0.05).values()) == 0


def test_z_scores_and_normalization_by_hand():
  z = analysis.z_scores(np.array([3.0, 5.0, 0.0]), np.array([[1.0, 5, 0], [3.0, 5, 0]]))
  # motif 0: mean 2, std 1 -> 1; motif 1: std 0 floored to 1, diff 0 -> 0; motif 2: 0.
  np.testing.assert_allclose(z, [1.0, 0.0, 0.0])
  np.testing.assert_allclose(analysis.normalize_profile([3.0, 4.0]), [0.6, 0.8])
  np.testing.assert_allclose(analysis.normalize_profile([0.0, 0.0]), [0.0, 0.0])


def test_random_references_preserve_degrees():
  rng = np.random.default_rng(0)
  a = (rng.random((12, 12)) < 0.3).astype(float)
  np.fill_diagonal(a, 0)
  g = analysis.to_digraph(a)
  for r in analysis.random_references(a, 3, seed=1):
    assert dict(r.in_degree()) == dict(g.in_degree())
    assert dict(r.out_degree()) == dict(g.out_degree())
    assert r.number_of_edges() == g.number_of_edges()


def test_significance_profile_properties():
  rng = np.random.default_rng(0)
  a = (rng.random((15, 15)) < 0.25).astype(float)
  d = analysis.significance_profile(a, num_random=5, seed=3, return_details=True)
  assert d["sp"].shape == (13,) and d["random"].shape == (5, 13)
  assert np.linalg.norm(d["sp"]) == pytest.approx(1.0)
  np.testing.assert_allclose(d["real"], list(analysis.motif_counts(a).values()))
  again = analysis.significance_profile(a, num_random=5, seed=3)
  np.testing.assert_allclose(again, d["sp"])  # deterministic given the seed
  # A complete graph has one degree-preserving realization: no motif is significant.
  np.testing.assert_allclose(analysis.significance_profile(np.ones((5, 5)), num_random=2),
                             np.zeros(13))
  assert analysis.profile_similarity(d["sp"], d["sp"]) == pytest.approx(1.0)


def test_bad_adjacency_is_a_clear_error():
  with pytest.raises(ValueError, match="square"):
    analysis.significance_profile(np.ones((3, 4)))
  with pytest.raises(ValueError, match="square"):
    analysis.motif_counts(np.ones(5))
  with pytest.raises(ValueError, match="at least 3 nodes"):
    analysis.motif_counts(np.ones((2, 2)))
  with pytest.raises(ValueError, match="unknown sex"):
    analysis.celegans_adjacency("worm")
