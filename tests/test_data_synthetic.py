"""Synthetic scenes: exact ground truth, and exact answerability for every task x damage."""

import math
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageFilter

from data_builders.build import load_config
from data_builders.corruptions import Context, corrupt
from data_builders.sources.base import NotApplicable
from data_builders.sources.observer import judge
from data_builders.sources.shapes import (
    Obj,
    Query,
    Scene,
    lacks,
    make_source,
    render,
    shape_mask,
)
from data_builders.sources.synthetic import SyntheticSource

ALL_TASKS = {"color": 1, "exists": 1, "count": 1, "position": 1, "size": 1, "prior_conflict": 1}
TWO = {"max_objects": 2, "object_size": [0.3, 0.45]}  # position / size questions need two objects
CFG = load_config({"synthetic": {"task_weights": ALL_TASKS, **TWO}, "train_sources": 10, "eval_sources": 60})
RGB = CFG.synthetic.colors


def color_query(name="circle"):
    return Query("color", "color", f"What color is the {name}?", "red", (), (0,), color_of=0, kinds=(name,))


def run(scene, query, name, severity, key=0, seed=0):
    image = render(scene, CFG)
    ctx = Context(key_box=scene.objects[key].box, replacement=Image.new("RGB", image.size))
    corrupted, params = corrupt(name, image, np.random.default_rng(seed), severity, ctx)
    return judge(CFG, scene, query, name, params, corrupted, image)


# ---- ground truth ---------------------------------------------------------------------------------------------
def test_sources_are_pure_functions_of_seed_and_id():
    assert make_source(CFG, "syn-eval-000003") == make_source(CFG, "syn-eval-000003")
    other = load_config({"seed": 1, "synthetic": {"task_weights": ALL_TASKS, **TWO}})
    assert [make_source(CFG, f"syn-eval-{i:06d}") for i in range(10)] != \
        [make_source(other, f"syn-eval-{i:06d}") for i in range(10)]


def test_answers_follow_from_the_scene():
    seen = set()
    for i in range(300):
        scene, q = make_source(CFG, f"syn-train-{i:06d}")
        objs = scene.objects
        seen.add((q.task, q.variant))
        assert 1 <= len(objs) <= CFG.synthetic.max_objects or q.task in ("position", "size")
        for a in objs:
            assert 0 <= a.box[0] < a.box[2] <= 64 and 0 <= a.box[1] < a.box[3] <= 64
            assert all(a is b or a.box[2] + 2 <= b.box[0] or b.box[2] + 2 <= a.box[0] or a.box[3] + 2 <= b.box[1]
                       or b.box[3] + 2 <= a.box[1] for b in objs)  # no overlap, 2 px apart
        kinds = [o.kind for o in objs]
        if q.task == "color" or q.variant == "color":
            assert kinds.count(objs[0].kind) == 1 and q.answer == objs[0].color
        if q.task == "exists":
            assert q.answer == ("yes" if q.kinds[0] in kinds else "no")
        if q.task == "count" or q.variant == "count":
            assert q.answer == str(kinds.count(q.kinds[0]))
        if q.task == "prior_conflict" and q.variant == "color":
            assert q.answer != CFG.synthetic.prior_objects["banana"][1] and "banana" in q.text
        if q.task == "size":
            areas = [int(shape_mask(o.kind, o.box[2] - o.box[0], o.box[3] - o.box[1]).sum()) for o in objs[:2]]
            assert max(areas) >= 2.0 * min(areas) and q.answer == objs[int(np.argmax(areas))].kind
        if q.variant == "left_right":
            assert q.answer == ("left" if objs[0].box[2] <= objs[1].box[0] else "right")
    assert {("exists", "yes"), ("exists", "no"), ("prior_conflict", "count"), ("position", "left_right"),
            ("position", "above_below"), ("size", "size")} <= seen


def test_render_draws_exact_palette_colours():
    scene = Scene(64, (Obj("square", "blue", (10, 10, 30, 30), "square"),))
    pixels = np.asarray(render(scene, CFG))
    assert tuple(pixels[20, 20]) == tuple(RGB["blue"]) and tuple(pixels[5, 5]) == (255, 255, 255)
    assert (np.all(pixels == RGB["blue"], axis=2)).sum() == 400


# ---- exact answerability ----------------------------------------------------------------------------------------
def gaussian_1d(values, sigma):
    reach = max(1, math.ceil(4 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-reach, reach + 1) / sigma) ** 2)
    return np.convolve(np.pad(values, reach, mode="edge"), kernel / kernel.sum(), mode="valid")


def reference_margin(obj, radius):
    """Independent re-computation of the shape rule for blur: a full-image separable Gaussian per kind."""
    def blurred(kind):
        full = np.zeros((64, 64))
        x0, y0, x1, y1 = obj.box
        full[y0:y1, x0:x1] = shape_mask(kind, x1 - x0, y1 - y0) * 255.0
        full = np.apply_along_axis(gaussian_1d, 0, full, radius)
        return np.apply_along_axis(gaussian_1d, 1, full, radius)
    contrast = np.abs(np.asarray(RGB[obj.color], float) - 255).mean()
    area = (obj.box[2] - obj.box[0]) * (obj.box[3] - obj.box[1])
    true = blurred(obj.kind)
    kinds = [k for k in ("circle", "crescent", "square", "triangle") if k != obj.kind]
    return min(math.sqrt(((blurred(k) - true) ** 2).sum() / area) / 255 * contrast for k in kinds)


def reference_color(obj, corrupted):
    x0, y0, x1, y1 = obj.box
    seen = np.asarray(corrupted, float)[y0:y1, x0:x1][shape_mask(obj.kind, x1 - x0, y1 - y0)].mean(axis=0)
    palette = {**{c: np.asarray(v, float) for c, v in RGB.items()}, "background": np.full(3, 255.0)}
    return min(palette, key=lambda c: ((palette[c] - seen) ** 2).sum())


@pytest.mark.parametrize("kind", ["circle", "square", "triangle"])
def test_blur_answerability_is_the_exact_rule(kind):
    verdicts = set()
    for color in ("red", "yellow"):
        for side in (12, 28):
            obj = Obj(kind, color, (18, 18, 18 + side, 18 + side), kind)
            scene = Scene(64, (obj,))
            query = replace(color_query(kind), answer=color)
            for severity in (0.15, 0.5, 1.0):
                ok, why = run(scene, query, "blur", severity)
                image = render(scene, CFG)
                corrupted = image.filter(ImageFilter.GaussianBlur(severity * 8))
                expected = reference_margin(obj, severity * 8) >= 30 and reference_color(obj, corrupted) == color
                assert ok == expected, (color, side, severity, why)
                verdicts.add(ok)
    assert verdicts == {True, False}  # the sweep crosses the boundary


def test_occlusion_rules():
    circle = Obj("circle", "red", (10, 10, 38, 38), "circle")
    square = Obj("square", "blue", (40, 40, 62, 62), "square")
    scene = Scene(64, (circle, square))
    assert run(scene, color_query(), "occlude_key", 1.0) == (False, "the circle is 0% visible (< min_visible 0.5)")
    ok, why = run(scene, color_query(), "occlude_key", 0.6)
    assert not ok and "visible" in why
    big_square = Scene(64, (Obj("square", "red", (10, 10, 40, 40), "square"),))
    assert run(big_square, color_query("square"), "occlude_key", 0.25)[0] is True
    # exists: no -- the occluder over the square is as large as an object, so a circle could hide under it
    absent = Query("exists", "no", "Is there a triangle?", "no", ("yes", "no"), (), all_objects=True,
                   absence=True, kinds=("triangle",), presupposes=False)
    assert run(scene, absent, "occlude_key", 1.0, key=1)[1].startswith("the occluder (24x24 px) could hide")
    assert run(scene, absent, "occlude_key", 0.15, key=1)[0] is True  # a 3 px strip hides no object
    # exists: yes -- one of two circles hidden, the other still shows it
    two = Scene(64, (Obj("circle", "red", (4, 4, 26, 26), "circle"),
                     Obj("circle", "green", (36, 36, 60, 60), "circle")))
    present = Query("exists", "yes", "Is there a circle?", "yes", ("yes", "no"), (0, 1), any_of=True,
                    kinds=("circle",), presupposes=False)
    assert run(two, present, "occlude_key", 1.0, key=0)[0] is True
    count = Query("count", "count", "How many circles are there?", "2", (), (0, 1), all_objects=True,
                  absence=True, kinds=("circle",), presupposes=False)
    assert run(two, count, "occlude_key", 1.0, key=0)[0] is False
    position = Query("position", "left_right", "q", "left", ("left", "right"), (0, 1), kinds=("circle", "square"))
    assert run(scene, position, "occlude_key", 1.0, key=1)[0] is False


def test_blank_noise_thumbnail_irrelevant():
    scene = Scene(64, (Obj("circle", "red", (10, 10, 38, 38), "circle"),))
    assert run(scene, color_query(), "blank", 1.0) == (False, "blank image: no visual evidence")
    assert run(scene, color_query(), "noise", 0.3)[0] is True
    assert run(scene, color_query(), "thumbnail", 0.5)[0] is True
    assert run(scene, color_query(), "irrelevant", 1.0)[0] is False


def reference_noise_verdict(obj, clean, noisy):
    """The noise rule written out per channel: nearer (L2 over the box) to the true shape than to every other."""
    x0, y0, x1, y1 = obj.box
    noise = np.asarray(noisy, float)[y0:y1, x0:x1] - np.asarray(clean, float)[y0:y1, x0:x1]
    step = np.asarray(RGB[obj.color], float) - 255.0
    mask = shape_mask(obj.kind, x1 - x0, y1 - y0).astype(float)
    for kind in ("circle", "crescent", "square", "triangle"):
        if kind != obj.kind:
            delta = (shape_mask(kind, x1 - x0, y1 - y0) - mask)[..., None] * step
            if 2 * (noise * delta).sum() >= (delta * delta).sum():
                return False
    return True


def test_noise_answerability_is_the_exact_rule():
    verdicts = set()
    for seed in range(24):
        obj = Obj("square", "yellow", (20, 20, 24, 24), "square")  # tiny and low contrast: noise can flip it
        scene = Scene(64, (obj,))
        image = render(scene, CFG)
        noisy, params = corrupt("noise", image, np.random.default_rng(seed), 1.0)
        _, why = judge(CFG, scene, replace(color_query("square"), answer="yellow"), "noise", params, noisy, image)
        assert ("looks more like" not in why) == reference_noise_verdict(obj, image, noisy), (seed, why)
        verdicts.add("looks more like" in why)
    assert verdicts == {True, False}  # the seeds cross the boundary


def test_heavy_thumbnail_of_a_small_low_contrast_object_is_unanswerable():
    scene = Scene(64, (Obj("circle", "yellow", (20, 20, 32, 32), "circle"),))
    ok, why = run(scene, replace(color_query(), answer="yellow"), "thumbnail", 1.0)
    assert not ok and ("could be a" in why or "reads as" in why)


# ---- mismatched, irrelevant, text interference -------------------------------------------------------------------
@pytest.fixture(scope="module")
def items():
    source = SyntheticSource(CFG)
    return source, [source.item("eval", i) for i in range(60)]


def test_mismatched_donor_is_another_image_without_the_named_shape(items):
    source, all_items = items
    made = 0
    for item in all_items:
        _, query = item.native
        try:
            image, answerable, _, params = source.mismatched(item)
        except NotApplicable as exc:
            assert not query.presupposes and "answered by any scene" in str(exc)
            continue
        made += 1
        donor_scene, _ = make_source(CFG, params["donor"])
        assert params["donor"] != item.source_id and params["donor"].startswith("syn-eval-")
        assert lacks(donor_scene, query) and answerable is False
        assert image.tobytes() == render(donor_scene, CFG).tobytes()
    assert made > 10


def test_irrelevant_image_lacks_the_named_shapes(items):
    source, all_items = items
    for item in all_items:
        _, query = item.native
        if not query.presupposes:
            with pytest.raises(NotApplicable):
                source.irrelevant(item)
            continue
        image, params = source.irrelevant(item)
        shown = {name for name, _, _ in params["irrelevant_scene"]}
        assert shown and not shown & set(query.kinds)
        assert image.tobytes() != item.image.tobytes()


def test_text_interference_rules():
    source = SyntheticSource(CFG)
    item = source.item("eval", 0)
    one = Scene(64, (Obj("circle", "red", (10, 10, 30, 30), "circle"),))
    two = Scene(64, one.objects + (Obj("square", "blue", (40, 40, 60, 60), "square"),))
    same = Scene(64, one.objects + (Obj("square", "red", (40, 40, 60, 60), "square"),))
    for scene, expected in ((one, True), (two, False), (same, True)):
        item.native = (scene, color_query())
        text, answerable, _ = source.reduce(item)
        assert text == "What color is the object?" and answerable is expected
    item.native = (two, Query("exists", "no", "Is there a triangle?", "no", ("yes", "no"), (), kinds=("triangle",),
                              all_objects=True, absence=True, presupposes=False))
    with pytest.raises(NotApplicable):
        source.reduce(item)
    item.native = (Scene(64, (one.objects[0], Obj("circle", "blue", (40, 40, 60, 60), "circle"))),
                   Query("count", "count", "How many circles are there?", "2", (), (0, 1), kinds=("circle",),
                         all_objects=True, absence=True, presupposes=False))
    assert source.reduce(item) == ("How many objects are there?", True,
                                   "without the shape name the answer is still unique")
    item.native = (one, color_query())
    wrong, answerable, _ = source.hint(item)
    assert wrong in RGB and wrong != "red" and answerable is True


def test_label_invariants_over_every_task_and_damage():
    """Every task x damage on 40 eval sources: the rules that hold whatever the scene."""
    from data_builders.pairs import Planner

    planner = Planner(CFG, SyntheticSource(CFG))
    seen = set()
    for index in range(40):
        for row in planner.rows("eval", index).rows:
            kind, task, ok = row["corruption"], row["task"], row["answerable"]
            seen.add((task, kind))
            assert row["target"] == ("answer" if ok else "abstain")
            if row["condition"] == "normal" or kind == "misleading_hint" or (kind == "blur" and row["severity"] < 0.2):
                assert ok, row  # the image still shows everything
            if kind in ("blank", "irrelevant", "swap"):
                assert not ok, row
            if kind == "occlude_key" and row["severity"] == 1.0 and task != "exists":
                assert not ok, row  # the key object is hidden
    tasks = {"color", "exists", "count", "position", "size", "prior_conflict"}
    assert {t for t, _ in seen} == tasks
    assert {(t, "swap") for t in ("color", "position", "size")} <= seen


def test_size_question_rules():
    big = Obj("square", "red", (4, 4, 34, 34), "square")
    small = Obj("circle", "blue", (44, 44, 60, 60), "circle")
    scene = Scene(64, (big, small))
    query = Query("size", "size", "Which is bigger, the square or the circle?", "square", ("square", "circle"),
                  (0, 1), kinds=("square", "circle"))
    assert run(scene, query, "blur", 0.15)[0] is True
    assert run(scene, query, "occlude_key", 1.0, key=1)[0] is False
    assert run(scene, query, "noise", 0.3)[0] is True
