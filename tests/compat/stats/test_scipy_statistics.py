"""Every statistic of `loopline stats` against scipy on varied data, to 1e-9 relative.

Data: normal, shifted, scaled, heavy-tailed (Student t with 1.5 degrees of freedom), heavy ties (rounded
values), tiny samples, samples large enough for the asymptotic KS p-value, samples with NaN (scipy with
`nan_policy="omit"` against ours on the same values without NaN), and category counts with categories the
reference never saw.
"""

import json
import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

RELATIVE = 1e-9


def sample_pairs():
    rng = np.random.default_rng(2026)
    normal = lambda n, loc=0.0, scale=1.0: rng.normal(loc, scale, n)  # noqa: E731
    yield "normal-same", normal(300), normal(250)
    yield "normal-shifted", normal(400), normal(380, 0.3)
    yield "normal-scaled", normal(500), normal(500, 0.0, 1.6)
    yield "heavy-tailed", rng.standard_t(1.5, 700), rng.standard_t(1.5, 650) + 0.2
    yield "ties", np.round(normal(800) * 2), np.round(normal(900, 0.1) * 2)
    yield "tiny", normal(3), normal(5, 1.0)
    yield "single", normal(1), normal(4)
    yield "equal-sizes", normal(60), normal(60, 0.5)
    yield "large-asymptotic", normal(20_000), normal(15_000, 0.02)
    yield "large-unbalanced", normal(800), normal(60_000, 0.05)
    yield "large-ties", np.round(normal(30_000)), np.round(normal(12_000, 0.03))
    with_nan = normal(400)
    with_nan[::17] = np.nan
    yield "nan", with_nan, normal(300, 0.2)


def count_pairs():
    rng = np.random.default_rng(7)
    yield "same-mix", rng.multinomial(1000, [0.5, 0.3, 0.2]), rng.multinomial(800, [0.5, 0.3, 0.2])
    yield "moved-mix", rng.multinomial(1000, [0.5, 0.3, 0.2]), rng.multinomial(900, [0.2, 0.3, 0.5])
    yield "many", rng.multinomial(5000, np.full(40, 1 / 40)), rng.multinomial(4000, np.linspace(1, 2, 40) / np.linspace(1, 2, 40).sum())
    yield "two", np.array([120, 80]), np.array([60, 90])
    yield "unseen", np.array([50, 30, 0]), np.array([40, 20, 15])


def clean(values):
    return [float(v) for v in values if not math.isnan(v)]


def close(ours, theirs):
    if math.isinf(theirs) or math.isnan(theirs):
        return ours == theirs or (math.isnan(theirs) and math.isnan(ours))
    return math.isclose(ours, theirs, rel_tol=RELATIVE, abs_tol=1e-300)


def decode(value):
    return float(value) if isinstance(value, str) else value


@pytest.fixture(scope="module")
def ask(loopline_bin):
    import subprocess

    def run(requests):
        lines = "\n".join(json.dumps(r) for r in requests)
        process = subprocess.run([loopline_bin, "stats"], input=lines, capture_output=True, text=True, check=True)
        answers = [json.loads(line) for line in process.stdout.splitlines()]
        assert len(answers) == len(requests)
        return answers

    return run


def test_two_sample_statistics_match_scipy(ask):
    requests, expected = [], []
    for name, reference, current in sample_pairs():
        r, c = clean(reference), clean(current)
        ks = stats.ks_2samp(reference, current, nan_policy="omit")
        requests.append({"function": "ks_2samp", "reference": r, "current": c})
        expected.append((name, "ks_2samp", ks.statistic, ks.pvalue))
        requests.append({"function": "wasserstein_distance", "reference": r, "current": c})
        expected.append((name, "wasserstein", stats.wasserstein_distance(r, c), None))
    for answer, (name, function, statistic, p_value) in zip(ask(requests), expected):
        assert "error" not in answer, (name, function, answer)
        assert close(decode(answer["statistic"]), statistic), (name, function, answer, statistic)
        if p_value is not None:
            assert close(decode(answer["p_value"]), p_value), (name, function, answer, p_value)


def test_anderson_darling_k_sample_matches_scipy(ask):
    import warnings

    rng = np.random.default_rng(99)
    cases = [[clean(r), clean(c)] for _, r, c in sample_pairs() if len(clean(r)) + len(clean(c)) > 3]
    cases.append([list(rng.normal(0, 1, 40)), list(rng.normal(0.3, 1, 55)), list(rng.normal(0, 2, 30))])
    cases.append([list(np.round(rng.normal(0, 1, 200))), list(np.round(rng.normal(0.05, 1, 300))),
                  list(np.round(rng.normal(0, 1, 250)))])
    cases.append([list(rng.normal(0, 1, 500)), list(rng.normal(0.12, 1, 500))])
    answers = ask([{"function": "anderson_ksamp", "samples": samples} for samples in cases])
    for answer, samples in zip(answers, cases):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = stats.anderson_ksamp(samples, variant="midrank")
        assert close(answer["statistic"], expected.statistic), (answer, expected)
        assert close(answer["p_value"], expected.pvalue), (answer, expected)


def test_kolmogorov_distribution_matches_kstwo_across_regions(ask):
    cases = []
    for n in [2, 7, 30, 100, 140, 141, 500, 1000, 5000, 40_000, 150_000, 600_000]:
        for z in [0.3, 0.6, 0.9, 1.2, 1.36, 1.6, 2.0, 3.0, 5.0]:
            d = z / math.sqrt(n)
            if 0 < d < 1:
                cases.append((n, d))
        cases.append((n, min(0.75, 1 - 1e-9)))
    answers = ask([{"function": "kstwo_sf", "n": n, "d": d} for n, d in cases])
    for answer, (n, d) in zip(answers, cases):
        expected = stats.kstwo.sf(d, n)
        assert close(decode(answer["statistic"]), expected), (n, d, answer, expected)


def test_category_tests_and_distances_match_scipy(ask):
    requests, expected = [], []
    for name, reference, current in count_pairs():
        r, c = [float(v) for v in reference], [float(v) for v in current]
        scaled = np.asarray(r) * (sum(c) / sum(r))
        fit = stats.chisquare(c, scaled) if min(r) > 0 else None
        if fit is not None:
            requests.append({"function": "chisquare", "observed": c, "expected": r})
            expected.append((name, "chisquare", fit.statistic, fit.pvalue))
        keep = [(a, b) for a, b in zip(r, c) if a + b > 0]
        table = stats.chi2_contingency(np.array(keep).T)
        requests.append({"function": "chi2_contingency", "reference": r, "current": c})
        expected.append((name, "chi2_contingency", table.statistic, table.pvalue))
        requests.append({"function": "jensenshannon", "reference": r, "current": c})
        expected.append((name, "jensenshannon", distance.jensenshannon(r, c), None))
        requests.append({"function": "jensenshannon", "reference": r, "current": c, "base": 2})
        expected.append((name, "jensenshannon-base2", distance.jensenshannon(r, c, base=2), None))
        requests.append({"function": "entropy", "reference": c, "current": r})
        expected.append((name, "entropy", stats.entropy(c, r), None))
        p, q = np.asarray(r) / sum(r), np.asarray(c) / sum(c)
        requests.append({"function": "hellinger", "reference": r, "current": c})
        expected.append((name, "hellinger", float(np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)) / np.sqrt(2)), None))
        p_filled, q_filled = np.where(p == 0, 0.0001, p), np.where(q == 0, 0.0001, q)
        requests.append({"function": "psi", "reference": r, "current": c})
        expected.append((name, "psi", float(np.sum((q_filled - p_filled) * np.log(q_filled / p_filled))), None))
    for answer, (name, function, statistic, p_value) in zip(ask(requests), expected):
        assert "error" not in answer, (name, function, answer)
        assert close(decode(answer["statistic"]), statistic), (name, function, answer, statistic)
        if p_value is not None:
            assert close(decode(answer["p_value"]), p_value), (name, function, answer, p_value)


def test_unseen_category_gives_infinite_chi_squared_and_zero_p(ask):
    answer = ask([{"function": "chisquare", "observed": [40, 20, 15], "expected": [50, 30, 0]}])[0]
    assert decode(answer["statistic"]) == math.inf and answer["p_value"] == 0.0


def test_two_proportion_z_test_matches_the_pooled_formula(ask):
    cases = [(45, 100, 30, 100), (500, 1000, 520, 1000), (3, 40, 19, 60), (999, 1000, 990, 1000)]
    answers = ask([
        {"function": "proportions_ztest", "reference_successes": a, "reference_trials": n, "current_successes": b, "current_trials": m}
        for a, n, b, m in cases
    ])
    for answer, (a, n, b, m) in zip(answers, cases):
        pooled = (a + b) / (n + m)
        z = (a / n - b / m) / math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
        assert close(answer["statistic"], z)
        assert close(answer["p_value"], 2 * stats.norm.sf(abs(z)))


def test_non_finite_input_is_refused_with_a_reason(ask):
    answer = ask([{"function": "ks_2samp", "reference": [1.0, "NaN"], "current": [1.0, 2.0]}])[0]
    assert "non-finite" in answer["error"] and "reference" in answer["error"]
