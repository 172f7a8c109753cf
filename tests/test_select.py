"""Audit selection: capacity, per-importer cap, random-control share, determinism, recovery."""

import logging

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from riskml.area_model import AreaModel
from riskml.config import AreaSpec, SelectParams, SplitParams
from riskml.select import (
    KEY_PROBABILITY,
    KEY_RECOVERY_MODEL,
    KEY_RECOVERY_RATIO,
    attach_reasons,
    rank_key,
    ranked,
    recovery_ratio,
    scored_declarations,
    select_candidates,
)
from riskml.train import RecoveryModel


def _spec(**kw) -> AreaSpec:
    base = dict(
        name="revenue",
        title="Revenue",
        positive="x",
        detectable_by=["physical"],
        inspection_rates=[0.05],
        operating_rate=0.05,
        capacity=20,
        rank_by="probability",
    )
    base.update(kw)
    return AreaSpec(**base)


@pytest.fixture
def world():
    rng = np.random.default_rng(3)
    n = 300
    decl = pd.DataFrame(
        {
            "declaration_id": [f"D{i:04d}" for i in range(n)],
            "item_no": 1,
            "accepted_date": pd.Timestamp("2024-07-01")
            + pd.to_timedelta(rng.integers(0, 90, n), "D"),
            "office": "SEA1",
            "importer_id": np.where(
                np.arange(n) < 100, "IMP_BIG", [f"IMP{i % 50}" for i in range(n)]
            ),
            "declarant_id": "DCL1",
            "origin_country": "CN",
            "hs_code": "61091000",
            "cif_value": 1000.0,
            "duties_paid": rng.uniform(10, 200, n),
        }
    )
    # the big importer holds the 100 highest scores
    score = np.where(np.arange(n) < 100, 0.9 + rng.uniform(0, 0.09, n), rng.uniform(0, 0.8, n))
    scores = decl[["declaration_id", "item_no", "accepted_date"]].assign(score=score)
    outcomes = pd.DataFrame(
        {
            "declaration_id": ["D0001", "D0002"],
            "item_no": [1, 1],
            "control_kind": ["pca", "physical"],
            "result_date": pd.to_datetime(["2024-05-01", "2024-09-01"]),
            "risk_area": ["revenue", "revenue"],
            "offence_found": [True, True],
            "additional_duty": [50.0, 1e6],
        }
    )
    split = SplitParams(
        train_start="2023-04-01",
        valid_start="2024-04-01",
        test_start="2024-07-01",
        test_end="2025-01-01",
    )
    return decl, scores, outcomes, split


def test_capacity_random_share_and_importer_cap(world):
    decl, scores, outcomes, split = world
    frame = ranked(scores, decl, outcomes, _spec(), split)
    params = SelectParams(random_share=0.25, max_per_importer=3, seed=1)
    out = select_candidates(frame, _spec(), params)
    assert len(out) == 20
    assert (out["selection_kind"] == "random_control").sum() == 5
    model = out[out["selection_kind"] == "model"]
    assert model["importer_id"].value_counts().max() <= 3
    assert (model["importer_id"] == "IMP_BIG").sum() == 3
    assert not out.duplicated(["declaration_id", "item_no"]).any()
    assert out["rank"].tolist() == list(range(1, 21))
    # model picks are the best-ranked eligible items, in order
    assert model["score"].is_monotonic_decreasing


def test_selection_is_deterministic_for_a_seed_and_varies_with_it(world):
    decl, scores, outcomes, split = world
    frame = ranked(scores, decl, outcomes, _spec(), split)
    a = select_candidates(frame, _spec(), SelectParams(random_share=0.5, seed=7))
    b = select_candidates(frame, _spec(), SelectParams(random_share=0.5, seed=7))
    c = select_candidates(frame, _spec(), SelectParams(random_share=0.5, seed=8))
    pd.testing.assert_frame_equal(a, b)
    assert set(a["declaration_id"]) != set(c["declaration_id"])


def test_recovery_ratio_uses_only_findings_known_before_the_cut(world):
    decl, _, outcomes, _ = world
    ratio = recovery_ratio(decl, outcomes, "revenue", known_before=pd.Timestamp("2024-07-01"))
    paid = decl.loc[decl["declaration_id"] == "D0001", "duties_paid"].iloc[0]
    assert ratio == pytest.approx(50.0 / paid)  # the 1e6 finding of September is not known yet


def test_scored_declarations_are_the_whole_tables_join_inside_or_outside_the_scores_dates(world):
    """The scored items' declaration rows, first looked for among the declarations accepted
    within the scores' dates: the join of every declaration in every case, including a scored
    item whose date in the scores lies outside its declaration's (then every declaration)."""
    decl, scores, _, _ = world
    history = pd.concat(
        [decl.assign(accepted_date=decl["accepted_date"] - pd.Timedelta(days=400),
                     declaration_id="H" + decl["declaration_id"]), decl]
    ).sample(frac=1.0, random_state=4).reset_index(drop=True)  # fmt: skip
    some = scores.sample(120, random_state=5).reset_index(drop=True)
    first = some["accepted_date"] == some["accepted_date"].min()  # their dates said later:
    moved = some.assign(
        accepted_date=some["accepted_date"].mask(first, some["accepted_date"].max())
    )
    assert first.sum() >= 1
    for scored in (some, moved, some.iloc[:0], some.drop(columns="accepted_date")):
        got = scored_declarations(history, scored)
        whole = history.merge(
            scored[["declaration_id", "item_no"]], on=["declaration_id", "item_no"]
        )
        pd.testing.assert_frame_equal(got, whole)
        assert len(got) == len(scored)


def test_select_reads_the_scored_months_and_the_findings_rows_and_draws_as_from_every_row(
    world, tmp_path
):
    """run_select reads, of the declarations stored by month, the scored months' rows and the
    findings' key and duties paid only: the same scored rows in the same order, the same
    recovery ratio and so the same ranked frame and picks as from every declaration; a scored
    item outside its declaration's month (or a table in one file) falls back to every row."""
    from riskml import io
    from riskml.config import Params
    from riskml.select import draw_area, finding_declarations, period_declarations
    from riskml.watchlists import RuleProfile

    decl, scores, outcomes, split = world
    older = decl.assign(
        accepted_date=decl["accepted_date"] - pd.Timedelta(days=400),
        declaration_id="H" + decl["declaration_id"],
    )
    history = pd.concat([older, decl]).sample(frac=1.0, random_state=4).reset_index(drop=True)
    found = outcomes.assign(declaration_id=["HD0001", "HD0002"], item_no=1)
    outcomes = pd.concat([outcomes, found], ignore_index=True)
    folder, single = tmp_path / "declarations", tmp_path / "declarations.parquet"
    io.write_partitioned(history, folder, keep_rows=True)
    io.write_parquet(history, single)
    whole = io.read_dataset(folder)
    pd.testing.assert_frame_equal(whole, history)
    ratio_rows = finding_declarations(folder, outcomes)
    assert len(ratio_rows) == 4 and len(ratio_rows) < len(history)
    pd.testing.assert_frame_equal(finding_declarations(single, outcomes), ratio_rows)
    for area in ("revenue", "x"):
        assert recovery_ratio(
            ratio_rows, outcomes, area, known_before=pd.Timestamp(split.test_start)
        ) == recovery_ratio(whole, outcomes, area, known_before=pd.Timestamp(split.test_start))
    params = Params.model_validate({"split": split.model_dump(mode="json")})
    spec = _spec(capacity=40)
    some = scores.sample(150, random_state=5).reset_index(drop=True)
    late = some["declaration_id"] == some["declaration_id"].min()
    moved = some.assign(  # its scores' date a month after its declaration's
        accepted_date=some["accepted_date"].mask(
            late, some["accepted_date"] + pd.Timedelta(days=40)
        )
    )
    for scored_items in (some, moved, some.iloc[:0]):
        for stored in (folder, single):
            cache: dict = {}
            rows, scored = period_declarations(stored, scored_items, cache)
            pd.testing.assert_frame_equal(scored, scored_declarations(whole, scored_items))
            if stored == folder and scored_items is some:
                assert len(rows) < len(history)  # the scored months only
            got = draw_area(
                scored_items, rows, outcomes, spec, params, RuleProfile(),
                scored=scored, ratio_declarations=ratio_rows,
            )  # fmt: skip
            want = draw_area(scored_items, whole, outcomes, spec, params, RuleProfile())
            pd.testing.assert_frame_equal(got[0], want[0])
            assert got[1] == want[1]
            pd.testing.assert_frame_equal(got[2], want[2])


def test_without_a_recovery_model_revenue_falls_back_to_the_ratio_and_says_so(world, caplog):
    decl, scores, outcomes, split = world
    with caplog.at_level(logging.WARNING, logger="riskml.select"):
        frame = ranked(scores, decl, outcomes, _spec(rank_by="expected_recovery"), split)
    assert frame.attrs["rank_source"] == KEY_RECOVERY_RATIO
    assert "no recovery-model prediction" in caplog.text and "recovery ratio" in caplog.text
    assert frame["rank_key"].equals(frame["expected_recovery"])
    assert frame["rank_key"].is_monotonic_decreasing
    np.testing.assert_allclose(
        frame["expected_recovery"],
        frame["score"]
        * frame["duties_paid"]
        * recovery_ratio(decl, outcomes, "revenue", known_before=pd.Timestamp("2024-07-01")),
    )


def test_rank_key_trades_hits_for_duty_with_the_exponent():
    # A: likely, small duty; B: unlikely, large duty; C: impossible
    p = np.array([0.8, 0.1, 0.0])
    duty = np.array([100.0, 10_000.0, 1e9])
    expected = p * duty
    np.testing.assert_allclose(rank_key(p, expected, 1.0), expected)
    np.testing.assert_allclose(rank_key(p, expected, 0.0), p)
    half = rank_key(p, expected, 0.5)
    np.testing.assert_allclose(half, p * np.sqrt(duty) * np.array([1, 1, 0]))
    assert half[1] > half[0] and half[2] == 0  # 0.1*100 > 0.8*10; no probability, no key
    assert rank_key(p, expected, 0.2)[0] > rank_key(p, expected, 0.2)[1]  # 2.0 > 0.63


def test_ranked_uses_the_specs_exponent(world):
    decl, scores, outcomes, split = world
    spec = _spec(rank_by="expected_recovery", recovery_exponent=0.3)
    frame = ranked(
        scores.assign(expected_recovery=scores["score"] * 50.0), decl, outcomes, spec, split
    )
    np.testing.assert_allclose(frame["rank_key"], frame["score"] * 50.0**0.3, rtol=1e-12)
    assert frame.attrs["rank_source"] == KEY_RECOVERY_MODEL


def test_a_kept_champion_ranks_its_list_by_its_own_exponent_not_the_edited_spec(world):
    """After revenue's recovery_exponent is edited and the retrained challenger loses, the
    champion's list must rank by the champion's own key (the key ``riskml score`` uses), not by
    the spec's new exponent."""
    from riskml.config import Params
    from riskml.select import draw_area
    from riskml.watchlists import RuleProfile

    decl, scores, outcomes, split = world
    # expected recovery varies independently of the score, so the exponent changes the order
    expected = np.random.default_rng(5).uniform(1.0, 1e5, len(scores))
    scores = scores.assign(expected_recovery=scores["score"] * expected)
    edited = _spec(rank_by="expected_recovery", recovery_exponent=0.9, capacity=60)
    champion = AreaModel(area="revenue", rank_by="expected_recovery", recovery_exponent=0.22)
    params = Params.model_validate({"split": split.model_dump(mode="json")})
    profile = RuleProfile()
    frame, _, _ = draw_area(scores, decl, outcomes, edited, params, profile, champion)
    np.testing.assert_allclose(
        frame["rank_key"], rank_key(frame["score"], frame["expected_recovery"], 0.22), rtol=1e-12
    )
    spec_frame, _, _ = draw_area(scores, decl, outcomes, edited, params, profile)
    assert list(spec_frame["declaration_id"][:60]) != list(frame["declaration_id"][:60])


# --- the recovery model's expected recovery as the rank key -------------------------------------


def _trained_area(*, with_recovery=True, ratio=0.0) -> AreaModel:
    """Real boosters on a tiny frame: the classifier learns the offence from ``x`` (about 0.9
    when x > 0, 0.1 otherwise), the recovery regression (gamma, as in ``riskml.train``) learns
    the recovered duty from ``amt`` (50 to 20,000); composed into the area model."""
    rng = np.random.default_rng(0)
    n = 400
    x = rng.choice([-1.0, 1.0], n)
    amt = np.exp(rng.uniform(np.log(50), np.log(20_000), n))
    y = (rng.random(n) < np.where(x > 0, 0.9, 0.1)).astype(int)
    train = pd.DataFrame({"x": x, "amt": amt})
    settings = {
        "verbosity": -1,
        "min_data_in_leaf": 5,
        "num_leaves": 4,
        "seed": 1,
        "num_threads": 1,
    }
    clf = lgb.train({**settings, "objective": "binary"}, lgb.Dataset(train, y), 50)
    recovery = None
    if with_recovery:
        rec = lgb.train({**settings, "objective": "gamma"}, lgb.Dataset(train, amt), 100)
        recovery = RecoveryModel(rec, ["x", "amt"], 100, n, 0, float("nan"))
    return AreaModel(
        area="revenue",
        rank_by="expected_recovery",
        classifier_=clf,
        feature_names_=["x", "amt"],
        recovery_=recovery,
        recovery_ratio_=ratio,
    )


# rows A..D: A likely and small, B unlikely and large, C likely and large, D unlikely and small
NEW_ROWS = pd.DataFrame(
    {"x": [1.0, -1.0, 1.0, -1.0], "amt": [100.0, 10_000.0, 10_000.0, 100.0]},
    index=["A", "B", "C", "D"],
)


def test_recovery_model_key_puts_likely_large_before_unlikely_large_before_likely_small():
    model = _trained_area()
    prob = model.predict_proba(NEW_ROWS)
    out = model.rank_key(NEW_ROWS)
    # expected recovery ≈ 0.9 × 10,000 > 0.1 × 10,000 > 0.9 × 100 > 0.1 × 100
    assert out["rank_key"].sort_values(ascending=False).index.tolist() == ["C", "B", "A", "D"]
    assert out["rank_key"].equals(out["expected_recovery"])
    assert out.loc["C", "rank_key"] == pytest.approx(0.9 * 10_000, rel=0.1)
    assert model.rank_source == KEY_RECOVERY_MODEL
    # by probability, A ranks with C and above B
    assert prob[0] > 0.8 > 0.2 > prob[1]


def test_ranked_uses_the_model_key_of_the_scores_and_keeps_the_ratio_out(world):
    decl, scores, outcomes, split = world
    model = _trained_area()
    spec = _spec(rank_by="expected_recovery")
    rows = pd.DataFrame(
        {"x": np.tile([1.0, -1.0, 1.0, -1.0], 75), "amt": np.tile(NEW_ROWS.amt, 75)}
    )
    scores = scores.assign(expected_recovery=model.rank_key(rows)["expected_recovery"].to_numpy())
    frame = ranked(scores, decl, outcomes, spec, split)
    assert frame.attrs["rank_source"] == KEY_RECOVERY_MODEL
    assert frame["rank_key"].equals(frame["expected_recovery"])
    assert frame["rank_key"].is_monotonic_decreasing
    # the first 75 are the C rows (likely and large), the last 75 the D rows, whatever the score
    pos = frame["declaration_id"].str[1:].astype(int) % 4
    assert (pos.iloc[:75] == 2).all() and (pos.iloc[-75:] == 3).all()
    # a probability area keeps ranking by its score even when a model key is there
    by_prob = ranked(scores, decl, outcomes, _spec(), split)
    assert by_prob.attrs["rank_source"] == KEY_PROBABILITY
    assert by_prob["rank_key"].equals(by_prob["score"])


def test_without_recovery_model_the_new_rows_fall_back_to_the_ratio():
    model = _trained_area(with_recovery=False, ratio=0.5)
    prob = model.predict_proba(NEW_ROWS)
    paid = np.array([1.0, 2.0, 3.0, 4.0])
    out = model.rank_key(NEW_ROWS, duties_paid=paid)
    np.testing.assert_allclose(out["rank_key"], prob * 0.5 * paid)
    assert model.rank_source == KEY_RECOVERY_RATIO
    # no finding known either: rank by probability
    bare = _trained_area(with_recovery=False).rank_key(NEW_ROWS)
    np.testing.assert_allclose(bare["rank_key"], prob)
    assert (bare["expected_recovery"] == 0).all()


def test_random_picks_carry_no_reasons(world):
    decl, scores, outcomes, split = world
    out = select_candidates(
        ranked(scores, decl, outcomes, _spec(), split), _spec(), SelectParams(random_share=0.5)
    )
    expl = out[["declaration_id", "item_no"]].assign(
        direction="raises", rank=1, sentence="importer: 3 findings in 12 audits"
    )
    reasons = pd.Series(attach_reasons(out, expl))
    kinds = out["selection_kind"].to_numpy()
    assert (reasons[kinds == "model"] == "importer: 3 findings in 12 audits").all()
    assert reasons[kinds == "random_control"].str.startswith("random control").all()


def test_a_shadow_list_carries_the_challengers_reasons_and_says_it_is_a_shadow(world):
    from riskml.select import SHADOW_NOTE, shadow_list

    decl, scores, outcomes, split = world
    out = select_candidates(
        ranked(scores, decl, outcomes, _spec(), split), _spec(), SelectParams(random_share=0.5)
    )
    out["model_version"] = "riskml-revenue v2 (challenger)"
    expl = out[["declaration_id", "item_no"]].assign(
        direction="raises", rank=1, sentence="importer: 3 findings in 12 audits"
    )
    shadow = shadow_list(out, expl)
    kinds = shadow["selection_kind"].to_numpy()
    assert shadow["reasons"].str.startswith(SHADOW_NOTE).all()
    said = f"{SHADOW_NOTE}. Reasons by riskml-revenue v2 (challenger): importer: 3 findings"
    assert shadow["reasons"][kinds == "model"].str.startswith(said).all()
    assert shadow["reasons"][kinds == "random_control"].str.contains("random control").all()
    assert "reasons" not in out.columns  # the picks themselves are not changed


# --- rule profiles, watch lists, combined list, importer periods, workbook --------------------


def _profile(tmp_path, text):
    from riskml.watchlists import load_profile

    path = tmp_path / "watchlists.yaml"
    path.write_text(text)
    return load_profile(path)


def test_hit_names_are_the_hits_joined_per_item(world, tmp_path):
    """The scorer's ``fired``/``flags`` columns (:func:`riskml.watchlists.hit_names`, matched
    once per batch) name, per item, the entries :func:`profile_hits` lists for it and the area,
    each once in profile order; a repeated item gets the names of all its rows."""
    from riskml.contract import KEY
    from riskml.watchlists import hit_names, profile_hits, profile_masks

    decl = world[0].head(200).reset_index(drop=True)
    decl = decl.assign(
        departure_country=np.where(decl.index % 3 == 0, "AE", "CN"),
        origin_country=np.where(decl.index % 2 == 0, "CN", "FR"),
    )
    decl = pd.concat([decl, decl.iloc[[0, 5]].assign(origin_country="XX")], ignore_index=True)
    profile = _profile(
        tmp_path,
        """
watchlists:
  - {name: route, action: flag, field: route, values: ["CN>AE"]}
  - {name: origin, action: select, areas: [revenue], field: origin_country, values: [CN]}
  - {name: route again, action: flag, areas: [drugs], field: route, values: ["CN>AE"]}
rules:
  - {name: rule CN, areas: [drugs, revenue], action: flag, when: {origin_country: [CN]}}
  - {name: origin, action: select, when: {departure_country: [AE]}}
""",
    )
    item = decl.groupby(KEY, sort=False).ngroup().to_numpy()
    masks = profile_masks(decl, profile, ["revenue", "drugs", "ipr"])
    for area in ("revenue", "drugs", "ipr"):
        hits = profile_hits(decl, profile, area)
        for action in ("select", "flag"):
            mine = hits[hits["action"] == action]
            names = mine.groupby(KEY, sort=False)["name"].agg(lambda s: "; ".join(dict.fromkeys(s)))
            expected = decl[KEY].merge(names.rename("n").reset_index(), on=KEY, how="left")
            got = hit_names(masks, area, action, len(decl), item=item)
            assert got.tolist() == expected["n"].fillna("").tolist(), (area, action)
    assert (hit_names(masks, "revenue", "select", len(decl), item=item) == "rule CN").sum() == 0
    assert "origin" in set(hit_names(masks, "revenue", "select", len(decl), item=item))


def test_watch_list_selects_first_and_flag_marks_without_selecting(world, tmp_path):
    from riskml.watchlists import profile_hits

    decl, scores, outcomes, split = world
    decl = decl.assign(
        departure_country="AE", importer_id=decl["importer_id"].mask(decl.index == 250, "IMP_W")
    )
    profile = _profile(
        tmp_path,
        """
watchlists:
  - {name: watched importer, action: select, field: importer_id, values: [IMP_W]}
  - {name: free-zone route, action: flag, field: route, values: ["CN>AE"]}
rules:
  - {name: other area only, areas: [drugs], action: select, when: {origin_country: [CN]}}
""",
    )
    hits = profile_hits(decl, profile, "revenue")
    assert set(hits["name"]) == {"watched importer", "free-zone route"}  # drugs rule not applied
    frame = ranked(scores, decl, outcomes, _spec(), split)
    out = select_candidates(frame, _spec(), SelectParams(random_share=0.1, seed=1), hits=hits)
    assert len(out) == 20
    first = out.iloc[0]
    assert first["declaration_id"] == "D0250"  # a low score, selected by the list
    assert first["selection_kind"] == "watchlist" and first["fired"] == "watched importer"
    assert (out["flags"] == "free-zone route").all()  # every item travels CN>AE: flagged
    assert (out["selection_kind"] == "model").sum() == 17
    assert (out["selection_kind"] == "random_control").sum() == 2
    reasons = attach_reasons(
        out,
        out[["declaration_id", "item_no"]]
        .iloc[0:0]
        .assign(direction="raises", rank=1, sentence=""),
    )
    assert reasons[0] == "selected by watch list: watched importer"


def test_unknown_area_in_profile_is_a_clear_error(tmp_path):
    from riskml.contract import RiskmlError

    with pytest.raises(RiskmlError, match="areas"):
        _profile(tmp_path, "rules:\n  - {name: x, areas: [smuggling], when: {office: [A]}}\n")


def test_combined_list_has_each_declaration_once_with_all_its_areas(world):
    from riskml.select import combine_areas

    decl, scores, outcomes, split = world
    frame = ranked(scores, decl, outcomes, _spec(), split)
    params = SelectParams(random_share=0.2, seed=3)
    rev = select_candidates(frame, _spec(), params).assign(
        reasons="", model_version="riskml-revenue v2 (champion)"
    )
    drugs = select_candidates(frame, _spec(name="drugs", capacity=10), params).assign(
        reasons="", model_version="riskml-drugs v1 (champion)"
    )
    out = combine_areas(
        {"revenue": rev, "drugs": drugs}, overall_capacity=0, n_declarations=300, random_share=0.2
    )
    assert out["declaration_id"].is_unique
    assert set(out["declaration_id"]) == set(rev["declaration_id"]) | set(drugs["declaration_id"])
    both = set(rev["declaration_id"]) & set(drugs["declaration_id"])
    assert (
        both and (out.set_index("declaration_id").loc[list(both), "areas"] == "revenue;drugs").all()
    )
    # the combined list names the model of each area's list, in the order of its areas
    by_id = out.set_index("declaration_id")
    assert (
        by_id.loc[list(both), "model_versions"]
        == "riskml-revenue v2 (champion);riskml-drugs v1 (champion)"
    ).all()
    only_drugs = sorted(set(drugs["declaration_id"]) - set(rev["declaration_id"]))
    assert (by_id.loc[only_drugs, "model_versions"] == "riskml-drugs v1 (champion)").all()
    capped = combine_areas(
        {"revenue": rev, "drugs": drugs},
        overall_capacity=0.05,
        n_declarations=300,
        random_share=0.2,
    )
    assert len(capped) == 15  # 5 % of 300 declarations
    assert (capped["selection_kinds"] == "random_control").sum() == 3


def test_importer_periods_sum_recovery_per_trader_and_quarter(world):
    from riskml.select import importer_periods

    decl, scores, outcomes, split = world
    frame = ranked(scores, decl, outcomes, _spec(rank_by="expected_recovery"), split)
    out = importer_periods({"revenue": frame}, period="Q", top_items=2, limit=1000)
    assert out["items"].sum() == len(frame)
    big = frame[frame["importer_id"] == "IMP_BIG"]
    q3 = big[big["accepted_date"] < "2024-10-01"]
    row = out[(out["importer_id"] == "IMP_BIG") & (out["period"] == "2024Q3")].iloc[0]
    assert row["expected_recovery"] == pytest.approx(q3["expected_recovery"].sum())
    assert row["top_items"].split("; ")[0] == f"{q3.iloc[0]['declaration_id']}/1"
    assert out["expected_recovery"].is_monotonic_decreasing


def test_workbook_has_readable_frozen_filtered_sheets(world, tmp_path):
    import openpyxl

    from riskml.select import write_xlsx

    decl, scores, outcomes, split = world
    out = select_candidates(ranked(scores, decl, outcomes, _spec(), split), _spec(), SelectParams())
    path = write_xlsx(
        {"Summary": pd.DataFrame({"area": ["revenue"]}), "revenue": out}, tmp_path / "c.xlsx"
    )
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Summary", "revenue"]
    ws = book["revenue"]
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == ws.dimensions
    header = [c.value for c in ws[1]]
    assert "Declaration" in header and "Selected by" in header and "Risk score" in header
    assert ws.max_row == len(out) + 1


def test_watch_lists_of_a_few_rows_match_as_in_a_large_batch(world, tmp_path):
    """Up to 64 rows the watch lists are matched value by value: each row matches as inside a
    large batch (routes with a missing country, HS prefixes, padded or missing values)."""
    from riskml.rules import SMALL_BATCH
    from riskml.watchlists import watch_mask

    decl = world[0].head(150).reset_index(drop=True)
    n = len(decl)
    decl = decl.assign(
        departure_country=pd.array(np.resize(["AE", "CN", None, ""], n), dtype="str"),
        origin_country=pd.array(np.resize(["CN", "FR", None], n), dtype="str"),
        hs_code=pd.array(np.resize(["610910", "2939", None, " 6109"], n), dtype="str"),
        importer_id=pd.array(np.resize(["I1", "I2", None], n), dtype="str"),
    )
    profile = _profile(
        tmp_path,
        """
watchlists:
  - {name: route, field: route, values: ["CN>AE", "FR>", ">CN", "CN>"]}
  - {name: goods, field: hs_code, values: ["6109", "29"]}
  - {name: who, field: importer_id, values: [I2]}
  - {name: where, field: origin_country, values: [FR]}
""",
    )
    assert n > SMALL_BATCH
    for watch in profile.watchlists:
        whole = watch_mask(decl, watch)
        assert whole.any(), watch.name
        one_by_one = [bool(watch_mask(decl.iloc[[i]], watch)[0]) for i in range(n)]
        assert one_by_one == whole.tolist(), watch.name
