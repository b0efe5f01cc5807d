"""Physics tests of the simulator against analytic expectations (PDG, ArgoNeuT, ICARUS)."""
from __future__ import annotations

import numpy as np
import pytest

from sparsenu.sim import (
    CLASS_PDG,
    Deposits,
    DetectorConfig,
    Primary,
    csda_range_mm,
    dedx_mev_cm,
    detector_response,
    propagate,
    recombination_factor,
)
from sparsenu.sim.detector import ionisation_points
from sparsenu.sim.propagation import kinetic_from_range

BIG = dict(volume_min_mm=(-20000.0,) * 3, volume_max_mm=(20000.0,) * 3)


def _primary(pdg: int, t: float, direction=(0.0, 0.0, 1.0), vertex=(0.0, 0.0, 0.0)) -> Primary:
    from sparsenu.sim.constants import MASS_MEV

    d = np.asarray(direction, float) / np.linalg.norm(direction)
    p = np.sqrt(t * t + 2 * t * MASS_MEV[pdg])
    return Primary(pdg=pdg, label=0, kinetic_energy_mev=t, direction=d, momentum_mev=p * d,
                   vertex_mm=np.asarray(vertex, float))


def _segment(pos, de=1.0, dedx=2.12, n=1, length_mm=0.0, axis=1) -> Deposits:
    start = np.tile(np.asarray(pos, np.float32), (n, 1))
    end = start.copy()
    end[:, axis] += length_mm
    return Deposits(start, end, np.full(n, de), np.full(n, dedx), np.ones(n), np.full(n, 13))


# ------------------------------------------------------------------------- energy loss ----
@pytest.mark.parametrize("pdg", [13, 211, 2212])
def test_mip_dedx_minimum(pdg):
    t = np.geomspace(10.0, 1.0e5, 5000)
    dedx = dedx_mev_cm(pdg, t)
    assert dedx.min() == pytest.approx(2.12, rel=0.03)
    # minimum at beta*gamma ~ 3-4
    from sparsenu.sim.constants import MASS_MEV
    bg = np.sqrt((t[dedx.argmin()] / MASS_MEV[pdg] + 1) ** 2 - 1)
    assert 2.5 < bg < 4.5


def test_range_tables_consistent():
    # PDG/NIST-like reference points (CSDA, liquid argon): 100 MeV proton ~7.8 cm,
    # 1 GeV muon ~4.4 m; the inverse table round-trips.
    assert csda_range_mm(2212, 100.0) == pytest.approx(78.0, rel=0.05)
    assert csda_range_mm(13, 1000.0) == pytest.approx(4400.0, rel=0.05)
    t = np.array([0.5, 5.0, 50.0, 500.0])
    assert np.allclose(kinetic_from_range(13, csda_range_mm(13, t)), t, rtol=1e-6)


@pytest.mark.parametrize("pdg,t", [(2212, 100.0), (2212, 300.0), (13, 100.0), (-13, 200.0),
                                   (13, 150.0)])
def test_contained_energy_equals_kinetic(pdg, t):
    # Protons now interact (version 2): only events where the primary ranged out without a
    # nuclear interaction (a single track) must deposit exactly T along the CSDA path.
    checked = 0
    for seed in range(40):
        dep = propagate(_primary(pdg, t), seed, **BIG)
        if pdg == 2212 and np.any(dep.track_id != 1):
            continue
        prim = dep.track_id == 1  # muon decay / capture products excluded
        assert dep.de_mev[prim].sum(dtype=np.float64) == pytest.approx(t, rel=0.02)
        # path length ~ CSDA range (MCS shortens the straight distance, not the path)
        seg = np.linalg.norm(dep.end_mm[prim] - dep.start_mm[prim], axis=1).sum()
        assert seg == pytest.approx(float(csda_range_mm(pdg, t)), rel=0.02)
        checked += 1
        if checked == 3:
            break
    assert checked == 3


def test_bragg_peak_proton():
    dep = propagate(_primary(2212, 200.0), 1, **BIG)
    dedx = dep.dedx_mev_cm
    assert dedx[:5].mean() == pytest.approx(float(dedx_mev_cm(2212, 200.0)), rel=0.15)
    assert dedx[-3:].mean() > 5 * dedx[:5].mean()


def test_mip_segments_and_straggling():
    dep = propagate(_primary(13, 1000.0), 3, **BIG)
    d = dep.dedx_mev_cm[:200]
    # near-MIP muon: median ~ mean ~ 2.2 MeV/cm, Landau-like (right-skewed) spread
    assert 1.9 < np.median(d) < 2.4
    assert d.std() > 0.02 * d.mean()
    assert np.mean(d) > np.median(d)


def test_muon_decay_products():
    n_michel = 0
    for seed in range(20):
        dep = propagate(_primary(-13, 150.0), seed, **BIG)  # mu+ always decays
        pos = dep.pdg == -11
        assert pos.any()
        n_michel += 1
        assert dep.de_mev[pos].sum() < 53.0
    assert n_michel == 20
    # pi+ at rest -> mu+ (4.1 MeV) -> e+; with no hadronic interaction for a short range
    found_mu = 0
    for seed in range(20):
        dep = propagate(_primary(211, 30.0), seed, **BIG)
        found_mu += bool(np.any(dep.pdg == -13))
    assert found_mu >= 15


def test_pion_hadronic_interactions_make_secondaries():
    n_sec = 0
    for seed in range(30):
        dep = propagate(_primary(211, 800.0), seed, **BIG)
        n_sec += bool(np.any(dep.pdg == 2212))
    # range of 800 MeV pion ~3.4 m >> 85.8 cm: almost all interact
    assert n_sec >= 20


def test_multiple_scattering_highland():
    # 1 GeV muons over ~10 cm: rms projected angle ~ Highland for the path
    angles = []
    for seed in range(150):
        dep = propagate(_primary(13, 1000.0), seed, **BIG)
        d = dep.end_mm[30] - dep.start_mm[30]  # 31st step, 150 mm from the vertex
        d = d / np.linalg.norm(d)
        angles.append(np.arctan2(d[0], d[2]))
    from sparsenu.sim.tracking import highland
    x = 150.0
    th_total = highland(np.array([x]), np.array([1000.0]), np.array([105.66]), 140.0)[0]
    assert np.std(angles) == pytest.approx(th_total, rel=0.2)


def test_photon_first_interaction_distance():
    # Version 2: the distance to the first interaction (pair or Compton) is Exp(mfp(E)) with the
    # NIST XCOM attenuation of argon (29.2 cm at 20 MeV, not 9/7 X0 = 18 cm). 1500 photons:
    # statistical error 1/sqrt(1500) = 2.6 %, tolerance 8 % (3 sigma).
    from sparsenu.sim.em import photon_mfp_mm
    dist = []
    for seed in range(1500):
        dep = propagate(_primary(22, 20.0), seed, **BIG)
        if dep.n:
            dist.append(np.linalg.norm(dep.start_mm, axis=1).min())
    dist = np.asarray(dist)
    assert len(dist) > 1450
    assert dist.mean() == pytest.approx(float(photon_mfp_mm(20.0)), rel=0.08)
    # pair conversion: both members start at the conversion point, nothing before it
    for seed in range(20):
        dep = propagate(_primary(22, 500.0), seed, **BIG)
        ids = np.unique(dep.track_id)
        first = dep.start_mm[dep.track_id == ids[0]][0]
        if dep.pdg[dep.track_id == ids[0]][0] == 11 and np.any(dep.pdg == -11):
            pos = dep.start_mm[dep.pdg == -11][0]
            assert np.allclose(first, pos, atol=1e-3)
            break
    else:
        raise AssertionError("no pair conversion as first interaction in 20 photons of 500 MeV")
    assert not np.any(dep.track_id == 1)  # no deposit before the conversion


def test_electron_single_trunk():
    dep = propagate(_primary(11, 500.0), 2, **BIG)
    first = dep.track_id == 1
    assert np.allclose(dep.start_mm[0], 0.0, atol=1e-3)
    assert 1.5 < np.median(dep.dedx_mev_cm[first][:4]) < 3.0


def test_tracks_stop_at_volume_boundary():
    vol = dict(volume_min_mm=(0, 0, 0), volume_max_mm=(500, 500, 500))
    for pdg in (13, 11, 22, 211):
        dep = propagate(_primary(pdg, 1000.0, vertex=(250, 250, 250)), 1, **vol)
        for arr in (dep.start_mm, dep.end_mm):
            assert arr.min() >= -1e-3 and arr.max() <= 500 + 1e-3


# ------------------------------------------------------------------- detector response ----
def _clean(**kw) -> DetectorConfig:
    base = dict(noise=0.0, threshold=0.0, diffusion_t_cm2_us=0.0, diffusion_l_cm2_us=0.0)
    base.update(kw)
    return DetectorConfig(**base)


def test_modified_box_formula():
    det = DetectorConfig()
    dedx = np.array([1.5, 2.12, 5.0, 20.0, 100.0])
    xi = 0.212 * dedx / (1.396 * 0.5)
    assert np.allclose(recombination_factor(dedx, det), np.log(0.93 + xi) / xi, rtol=1e-12)
    assert recombination_factor(np.array([2.12]), det)[0] == pytest.approx(0.704, abs=0.005)
    # end to end: collected charge = gain * R * dE / W_ion (no attenuation, noise, threshold)
    det = _clean(lifetime_us=1e12)
    for d in (2.12, 10.0):
        hits = detector_response(_segment((480.0, 480.0, 480.0), de=1.0, dedx=d), det, 0)
        xi = 0.212 * d / (1.396 * 0.5)
        expect = det.gain * np.log(0.93 + xi) / xi * 1.0 / 23.6e-6
        assert hits.charge.sum() == pytest.approx(expect, rel=1e-5)


def test_birks_formula():
    det = DetectorConfig(recombination="birks", field_kv_cm=0.4)
    dedx = np.array([2.12, 10.0])
    expect = 0.8 / (1 + 0.0486 * dedx / (1.396 * 0.4))
    assert np.allclose(recombination_factor(dedx, det), expect)


def test_charge_vs_drift_time_exponential():
    det = _clean(lifetime_us=300.0)
    v = det.vdrift_mm_us
    xs = np.array([20.0, 200.0, 500.0, 900.0])
    q = np.array([detector_response(_segment((x, 400.0, 400.0), length_mm=0.5), det, 1).charge.sum()
                  for x in xs])
    t = xs / v
    assert np.allclose(q / q[0], np.exp(-(t - t[0]) / 300.0), rtol=2e-3)
    assert v == pytest.approx(1.57, abs=0.05)


def test_drift_axis_choice():
    det = _clean(lifetime_us=300.0, drift_axis=2)
    q1 = detector_response(_segment((400.0, 400.0, 100.0)), det, 0).charge.sum()
    q2 = detector_response(_segment((400.0, 400.0, 700.0)), det, 0).charge.sum()
    assert q2 / q1 == pytest.approx(np.exp(-600.0 / det.vdrift_mm_us / 300.0), rel=1e-3)


def test_diffusion_width_sqrt_2dt():
    det = _clean(diffusion_t_cm2_us=1e-3, diffusion_l_cm2_us=4e-4, lifetime_us=1e9)
    x_drift = 800.0
    dep = _segment((x_drift, 486.4, 486.4), n=20000, length_mm=0.0)
    pts, _, t = ionisation_points(dep, det, np.random.default_rng(0))
    sig_t = np.sqrt(2 * 1e-3 * 100 * t[0])  # mm
    sig_l = np.sqrt(2 * 4e-4 * 100 * t[0])
    assert pts[:, 1].std() == pytest.approx(sig_t, rel=0.03)
    assert pts[:, 2].std() == pytest.approx(sig_t, rel=0.03)
    assert pts[:, 0].std() == pytest.approx(sig_l, rel=0.03)
    # the same width measured on voxel charges (sigma^2 + voxel^2 / 12)
    hits = detector_response(dep, det, 3)
    w = hits.charge / hits.charge.sum()
    c = (hits.coords[:, 1] + 0.5) * det.voxel_size_mm
    var = np.sum(w * (c - np.sum(w * c)) ** 2)
    assert np.sqrt(var - det.voxel_size_mm**2 / 12) == pytest.approx(sig_t, rel=0.05)


def test_threshold_noise_gain_and_sorting():
    det = DetectorConfig()
    dep = propagate(_primary(13, 500.0, direction=(1, 1, 1), vertex=(300, 300, 300)), 0)
    hits = detector_response(dep, det, 0)
    assert hits.n > 50
    assert np.all(hits.charge > det.threshold)
    keys = [tuple(c) for c in hits.coords]
    assert keys == sorted(set(keys))
    assert hits.coords.min() >= 0 and hits.coords.max() < 256
    # MIP voxel of order 10-100 ADC at the default gain
    assert 8 < np.median(hits.charge) < 60
    h2 = detector_response(dep, det.replace(gain=2 * det.gain, threshold=2 * det.threshold,
                                            noise=0.0), 0)
    h1 = detector_response(dep, det.replace(noise=0.0), 0)
    assert np.array_equal(h1.coords, h2.coords)
    assert np.allclose(h2.charge, 2 * h1.charge, rtol=1e-5)


def test_dead_channels_remove_whole_columns():
    det = DetectorConfig(dead_channel_fraction=0.3, threshold=0.0, noise=0.0)
    from sparsenu.sim.detector import dead_pixel_mask
    a, b = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    dead = dead_pixel_mask(a.ravel(), b.ravel(), det)
    assert dead.mean() == pytest.approx(0.3, abs=0.01)
    dep = propagate(_primary(13, 800.0, direction=(0, 1, 1), vertex=(400, 200, 200)), 4)
    live = detector_response(dep, det.replace(dead_channel_fraction=0.0), 2)
    hits = detector_response(dep, det, 2)
    assert 0 < hits.n < live.n
    assert not dead_pixel_mask(hits.coords[:, 1], hits.coords[:, 2], det).any()
    # same map for another seed of the detector stage
    hits_b = detector_response(dep, det, 9)
    assert not dead_pixel_mask(hits_b.coords[:, 1], hits_b.coords[:, 2], det).any()


def test_primary_class_pdg():
    assert CLASS_PDG == (11, 22, 13, 211, 2212)


def test_detector_subpoint_cap_warns(monkeypatch):
    """A segment needing more sub-points than the cap is sampled with the cap, with a warning
    (never silently)."""
    import sparsenu.sim.detector as D
    from sparsenu.sim import DetectorConfig, SimulationCapWarning
    from sparsenu.sim.deposits import Deposits

    dep = Deposits(np.array([[100.0, 100, 100]]), np.array([[100.0, 100, 400]]), np.ones(1), np.full(1, 2.1),
                   np.ones(1), np.full(1, 13))
    monkeypatch.setattr(D, "MAX_SUBPOINTS", 10)
    with pytest.warns(SimulationCapWarning, match="1 deposit segment"):
        hits = D.detector_response(dep, DetectorConfig(noise=0.0, threshold=0.0), 0)
    assert hits.n > 0


def test_pion_production_at_the_threshold_mass_does_not_crash():
    """The (N pi) system of pion production is made at its threshold mass; rounding put it
    just below threshold about once in 600 pion events and the second split returned None
    (TypeError). This event hit it."""
    from sparsenu.keys import derive_seed
    from sparsenu.sim import DetectorConfig, SimConfig, simulate_event

    ev = simulate_event(848, derive_seed("simulated-set", 2025, "val"), 3, SimConfig(), DetectorConfig())
    assert ev.hits.n > 0
