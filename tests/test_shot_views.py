"""The shot editor, duplicating and deleting shots."""

from __future__ import annotations

import pytest
from django.forms.models import model_to_dict
from django.urls import reverse

from storyboard import catalogue
from storyboard.models import Asset, Generation, Shot
from tests.conftest import client_for
from tests.factories import AssetFactory, ProjectFactory, SceneFactory, ShotFactory
from tests.test_board_views import pushed_order

pytestmark = pytest.mark.django_db

# Refused input answers 422 with the form and its messages (storyboard.views.INVALID).
INVALID = 422
HTMX = {"HTTP_HX_REQUEST": "true"}
READ_ONLY = ["reviewer", "viewer"]
WRITERS = ["owner", "producer", "editor"]

FAST_TEXT = "bytedance/seedance-2.0/fast/text-to-video"
FAST_IMAGE = "bytedance/seedance-2.0/fast/image-to-video"
STANDARD_IMAGE = "bytedance/seedance-2.0/image-to-video"
STANDARD_REFERENCE = "bytedance/seedance-2.0/reference-to-video"


def test_the_endpoint_ids_used_here_exist():
    for endpoint in (FAST_TEXT, FAST_IMAGE, STANDARD_IMAGE, STANDARD_REFERENCE):
        assert endpoint in catalogue.ENDPOINTS


def shot_data(**overrides) -> dict:
    """A valid shot editor submission; checkboxes are on when present."""
    data = {
        "title": "Opening, revised",
        "prompt": "A gull lands on the railing.",
        "notes": "",
        "mode": "text",
        "endpoint": FAST_TEXT,
        "resolution": "720p",
        "aspect_ratio": "16:9",
        "duration": "5",
        "generate_audio": "on",
        "seed": "",
        "start_frame": "",
        "end_frame": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def snapshot(shot: Shot) -> dict:
    """Everything about the stored shot, so 'nothing changed' can be asserted."""
    fresh = Shot.objects.get(pk=shot.pk)
    data = model_to_dict(fresh)
    data["references"] = sorted(a.pk for a in data["references"])
    data["updated"] = fresh.updated
    data["position"] = fresh.position
    return data


def edit(user, shot: Shot, data: dict, **extra):
    return client_for(user).post(reverse("sb:shot", args=[shot.pk]), data, **extra)


def assert_login_redirect(response, url: str) -> None:
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('accounts:login')}?next={url}"


# shot_edit: viewing


@pytest.mark.parametrize("role", [*WRITERS, *READ_ONLY])
def test_it_shows_the_shot_editor_to_every_member(cast, role):
    response = client_for(cast.member(role)).get(reverse("sb:shot", args=[cast.shot.pk]))
    assert response.status_code == 200
    content = response.content.decode()
    assert "<html" in content
    assert 'id="shot-editor"' in content
    assert "Opening" in content
    # Read-only roles see the form, but disabled.
    assert ("<fieldset disabled>" in content) == (role in READ_ONLY)


def test_it_gives_htmx_only_the_editor_partial(cast):
    response = client_for(cast.viewer).get(reverse("sb:shot", args=[cast.shot.pk]), **HTMX)
    assert response.status_code == 200
    content = response.content.decode()
    assert 'id="shot-editor"' in content
    assert "<html" not in content


def test_it_hides_the_shot_from_outsider(cast):
    response = client_for(cast.outsider).get(reverse("sb:shot", args=[cast.shot.pk]))
    assert response.status_code == 404
    assert b"Opening" not in response.content


def test_it_sends_anonymous_to_login_from_the_shot(cast):
    url = reverse("sb:shot", args=[cast.shot.pk])
    assert_login_redirect(client_for(None).get(url), url)


def test_it_lists_only_this_projects_images_as_frames(cast):
    mine = AssetFactory(project=cast.project, original_name="mine.png")
    AssetFactory(project=ProjectFactory(team=cast.team), original_name="sibling.png")
    AssetFactory(project=ProjectFactory(team=cast.other_team), original_name="theirs.png")
    response = client_for(cast.editor).get(reverse("sb:shot", args=[cast.shot.pk]))
    content = response.content.decode()
    assert str(mine.uid) in content
    assert "mine.png" in content
    assert "sibling.png" not in content
    assert "theirs.png" not in content


# shot_edit: saving


@pytest.mark.parametrize("role", WRITERS)
def test_it_saves_a_shot(cast, role):
    response = edit(cast.member(role), cast.shot, shot_data(seed="42"))
    assert response.status_code == 302
    assert response["Location"] == reverse("sb:board", args=[cast.project.pk])
    shot = Shot.objects.get(pk=cast.shot.pk)
    assert shot.title == "Opening, revised"
    assert shot.prompt == "A gull lands on the railing."
    assert shot.seed == 42
    assert shot.duration == "5"


def test_it_returns_the_saved_editor_to_htmx(cast):
    response = edit(cast.editor, cast.shot, shot_data(), **HTMX)
    assert response.status_code == 200
    content = response.content.decode()
    assert "Saved." in content
    assert "Opening, revised" in content
    assert "<html" not in content
    assert Shot.objects.get(pk=cast.shot.pk).title == "Opening, revised"


def test_it_saves_frames_and_references_from_the_project(cast):
    start, end = AssetFactory(project=cast.project), AssetFactory(project=cast.project)
    response = edit(cast.editor, cast.shot, shot_data(
        mode="image", endpoint=STANDARD_IMAGE, resolution="1080p",
        start_frame=str(start.pk), end_frame=str(end.pk),
    ))
    assert response.status_code == 302
    shot = Shot.objects.get(pk=cast.shot.pk)
    assert (shot.start_frame, shot.end_frame, shot.resolution) == (start, end, "1080p")

    images = AssetFactory.create_batch(2, project=cast.project)
    audio = AssetFactory(project=cast.project, kind=Asset.Kind.AUDIO, content_type="audio/mpeg")
    response = edit(cast.editor, cast.shot, shot_data(
        mode="reference", endpoint=STANDARD_REFERENCE,
        references=[str(a.pk) for a in [*images, audio]],
    ))
    assert response.status_code == 302
    assert set(Shot.objects.get(pk=cast.shot.pk).references.all()) == {*images, audio}


@pytest.mark.parametrize(("overrides", "message"), [
    pytest.param({"resolution": "1080p"}, "1080p needs the standard tier", id="fast-1080p"),
    pytest.param({"endpoint": STANDARD_IMAGE}, "is not a text to video endpoint",
                 id="text-mode-image-endpoint"),
    pytest.param({"duration": "2"}, "takes 4–15 s or auto.", id="duration-too-short"),
    pytest.param({"aspect_ratio": "2:1"}, "Select a valid choice", id="unknown-aspect-ratio"),
    pytest.param({"endpoint": "bytedance/seedance-9/text-to-video"}, "Select a valid choice",
                 id="unknown-endpoint"),
    pytest.param({"seed": str(2**32)}, "Ensure this value is less than or equal to",
                 id="seed-too-big"),
])
def test_it_refuses_invalid_combinations(cast, overrides, message):
    before = snapshot(cast.shot)
    response = edit(cast.editor, cast.shot, shot_data(**overrides))
    assert response.status_code == INVALID
    content = response.content.decode()
    assert message in content
    assert "Nothing was saved" in content
    assert snapshot(cast.shot) == before


def test_it_refuses_an_end_frame_on_a_text_endpoint(cast):
    frame = AssetFactory(project=cast.project)
    before = snapshot(cast.shot)
    response = edit(cast.editor, cast.shot, shot_data(end_frame=str(frame.pk)))
    assert response.status_code == INVALID
    assert "does not take an end frame" in response.content.decode()
    assert snapshot(cast.shot) == before


def test_it_refuses_ten_reference_images(cast):
    images = AssetFactory.create_batch(10, project=cast.project)
    before = snapshot(cast.shot)
    response = edit(cast.editor, cast.shot, shot_data(
        mode="reference", endpoint=STANDARD_REFERENCE, references=[str(a.pk) for a in images],
    ))
    assert response.status_code == INVALID
    assert "10 images selected; at most 9." in response.content.decode()
    assert snapshot(cast.shot) == before
    assert not cast.shot.references.exists()


def test_it_refuses_audio_references_without_image_or_video(cast):
    audio = AssetFactory(project=cast.project, kind=Asset.Kind.AUDIO, content_type="audio/mpeg",
                         thumbnail=None)
    before = snapshot(cast.shot)
    response = edit(cast.editor, cast.shot, shot_data(
        mode="reference", endpoint=STANDARD_REFERENCE, references=[str(audio.pk)],
    ))
    assert response.status_code == INVALID
    assert ("Audio references need at least one image or video reference."
            in response.content.decode())
    assert snapshot(cast.shot) == before


def test_it_refuses_another_teams_asset_as_start_frame(cast):
    theirs = AssetFactory(project=ProjectFactory(team=cast.other_team))
    before = snapshot(cast.shot)
    response = edit(cast.editor, cast.shot, shot_data(
        mode="image", endpoint=FAST_IMAGE, start_frame=str(theirs.pk),
    ))
    assert response.status_code == INVALID
    assert "Select a valid choice" in response.content.decode()
    assert snapshot(cast.shot) == before
    assert Shot.objects.get(pk=cast.shot.pk).start_frame_id is None


def test_it_refuses_another_projects_asset_as_reference(cast):
    sibling = AssetFactory(project=ProjectFactory(team=cast.team))
    before = snapshot(cast.shot)
    response = edit(cast.editor, cast.shot, shot_data(
        mode="reference", endpoint=STANDARD_REFERENCE, references=[str(sibling.pk)],
    ))
    assert response.status_code == INVALID
    assert snapshot(cast.shot) == before


def test_it_refuses_another_projects_scene(cast):
    elsewhere = SceneFactory(project=ProjectFactory(team=cast.team))
    before = snapshot(cast.shot)
    response = edit(cast.editor, cast.shot, shot_data(scene=str(elsewhere.pk)))
    assert response.status_code == INVALID
    assert snapshot(cast.shot) == before


def test_it_returns_the_refusal_to_htmx_as_a_partial(cast):
    before = snapshot(cast.shot)
    response = edit(cast.editor, cast.shot, shot_data(resolution="1080p"), **HTMX)
    assert response.status_code == INVALID
    content = response.content.decode()
    assert "1080p needs the standard tier" in content
    assert 'id="shot-editor"' in content
    assert "<html" not in content
    # The heading shows the stored shot, not the rejected title.
    assert "<h2>Opening</h2>" in content
    assert snapshot(cast.shot) == before


@pytest.mark.parametrize("role", READ_ONLY)
def test_it_refuses_read_only_roles_saving_a_shot(cast, role):
    before = snapshot(cast.shot)
    response = edit(cast.member(role), cast.shot, shot_data())
    assert response.status_code == 403
    assert snapshot(cast.shot) == before


def test_it_hides_shot_saving_from_outsider(cast):
    before = snapshot(cast.shot)
    response = edit(cast.outsider, cast.shot, shot_data())
    assert response.status_code == 404
    assert snapshot(cast.shot) == before


def test_it_sends_anonymous_to_login_from_shot_saving(cast):
    before = snapshot(cast.shot)
    url = reverse("sb:shot", args=[cast.shot.pk])
    assert_login_redirect(client_for(None).post(url, shot_data()), url)
    assert snapshot(cast.shot) == before


# shot_duplicate


def test_it_duplicates_a_shot_right_after_the_original(cast):
    a = cast.shot
    reference = AssetFactory(project=cast.project)
    a.references.add(reference)
    Shot.objects.filter(pk=a.pk).update(review=Shot.Review.APPROVED)
    b = ShotFactory(project=cast.project, title="Beach")
    scene = SceneFactory(project=cast.project)
    c = ShotFactory(project=cast.project, title="Cliff", scene=scene)
    elsewhere = ShotFactory(project=ProjectFactory(team=cast.team))
    elsewhere_position = elsewhere.position

    response = client_for(cast.editor).post(reverse("sb:shot-duplicate", args=[a.pk]))

    assert response.status_code == 302
    assert response["Location"] == reverse("sb:board", args=[cast.project.pk])
    copy = cast.project.shots.exclude(pk__in=[a.pk, b.pk, c.pk]).get()
    assert copy.title == "Opening (copy)"
    assert copy.prompt == a.prompt
    assert copy.review == Shot.Review.DRAFT
    assert copy.created_by == cast.editor
    assert list(copy.references.all()) == [reference]
    order = [s.pk for _, shots in cast.project.board() for s in shots]
    assert order == [a.pk, copy.pk, b.pk, c.pk]
    elsewhere.refresh_from_db()
    assert elsewhere.position == elsewhere_position


def test_it_duplicates_into_the_same_scene(cast):
    scene = SceneFactory(project=cast.project)
    c = ShotFactory(project=cast.project, title="Cliff", scene=scene)
    d = ShotFactory(project=cast.project, title="Dunes", scene=scene)
    client_for(cast.producer).post(reverse("sb:shot-duplicate", args=[c.pk]))
    copy = cast.project.shots.get(title="Cliff (copy)")
    assert copy.scene == scene
    groups = {sc.pk if sc else None: [s.pk for s in shots] for sc, shots in cast.project.board()}
    assert groups[scene.pk] == [c.pk, copy.pk, d.pk]


def test_it_returns_the_board_with_the_copy_to_htmx(cast):
    response = client_for(cast.editor).post(reverse("sb:shot-duplicate", args=[cast.shot.pk]),
                                            **HTMX)
    assert response.status_code == 200
    content = response.content.decode()
    copy = Shot.objects.get(title="Opening (copy)")
    # The copy's card and the new order, which the board applies; not the whole board.
    assert pushed_order(content) == [[None, [cast.shot.pk, copy.pk]]]
    assert f'id="shot-{copy.pk}"' in content
    assert 'id="board"' not in content
    assert "<html" not in content


@pytest.mark.parametrize("role", READ_ONLY)
def test_it_refuses_read_only_roles_duplicating(cast, role):
    response = client_for(cast.member(role)).post(
        reverse("sb:shot-duplicate", args=[cast.shot.pk])
    )
    assert response.status_code == 403
    assert cast.project.shots.count() == 1


def test_it_hides_duplicate_from_outsider(cast):
    response = client_for(cast.outsider).post(reverse("sb:shot-duplicate", args=[cast.shot.pk]))
    assert response.status_code == 404
    assert Shot.objects.count() == 1


def test_it_sends_anonymous_to_login_from_duplicate(cast):
    url = reverse("sb:shot-duplicate", args=[cast.shot.pk])
    assert_login_redirect(client_for(None).post(url), url)
    assert Shot.objects.count() == 1


# shot_delete


def test_it_deletes_a_shot(cast):
    keep = ShotFactory(project=cast.project, title="Keep")
    response = client_for(cast.editor).post(reverse("sb:shot-delete", args=[cast.shot.pk]),
                                            follow=True)
    assert response.redirect_chain == [(reverse("sb:board", args=[cast.project.pk]), 302)]
    assert "Deleted Opening." in response.content.decode()
    assert list(cast.project.shots.all()) == [keep]


def test_it_returns_the_board_without_the_shot_to_htmx(cast):
    keep = ShotFactory(project=cast.project, title="Keep")
    response = client_for(cast.editor).post(reverse("sb:shot-delete", args=[cast.shot.pk]),
                                            **HTMX)
    assert response.status_code == 200
    content = response.content.decode()
    # The order without the shot (the board drops its card) and the new totals.
    assert pushed_order(content) == [[None, [keep.pk]]]
    assert "1 shot · 5 s planned" in content
    assert "<html" not in content
    assert not Shot.objects.filter(pk=cast.shot.pk).exists()


@pytest.mark.parametrize("role", READ_ONLY)
def test_it_refuses_read_only_roles_deleting_shots(cast, role):
    response = client_for(cast.member(role)).post(reverse("sb:shot-delete", args=[cast.shot.pk]))
    assert response.status_code == 403
    assert Shot.objects.filter(pk=cast.shot.pk).exists()


def test_it_hides_shot_delete_from_outsider(cast):
    response = client_for(cast.outsider).post(reverse("sb:shot-delete", args=[cast.shot.pk]))
    assert response.status_code == 404
    assert Shot.objects.filter(pk=cast.shot.pk).exists()


def test_it_sends_anonymous_to_login_from_shot_delete(cast):
    url = reverse("sb:shot-delete", args=[cast.shot.pk])
    assert_login_redirect(client_for(None).post(url), url)
    assert Shot.objects.filter(pk=cast.shot.pk).exists()


def test_it_refuses_get_on_shot_delete(cast):
    response = client_for(cast.owner).get(reverse("sb:shot-delete", args=[cast.shot.pk]))
    assert response.status_code == 405
    assert Shot.objects.filter(pk=cast.shot.pk).exists()


# shot_edit: what stops Generate, and what read-only roles are told


def test_it_disables_generate_with_the_reason_while_the_prompt_is_empty(cast):
    shot = ShotFactory(project=cast.project, prompt="")
    content = client_for(cast.editor).get(reverse("sb:shot", args=[shot.pk])).content.decode()
    assert 'id="generate" disabled aria-describedby="generate-why"' in content
    assert 'id="generate-why"' in content
    assert "Write a prompt first." in content


def test_it_enables_generate_for_a_shot_without_problems(cast):
    content = client_for(cast.editor).get(reverse("sb:shot", args=[cast.shot.pk])) \
        .content.decode()
    assert 'id="generate">' in content
    assert 'id="generate-why"' not in content


def test_it_says_an_empty_prompt_was_saved_but_cannot_be_generated(cast):
    response = edit(cast.editor, cast.shot, shot_data(prompt=""), **HTMX)
    assert response.status_code == 200
    content = response.content.decode()
    assert "Saved — but it can’t be generated yet: Write a prompt first." in content
    assert "Saved. Everyone" not in content
    assert 'id="generate" disabled' in content


def test_it_enables_generate_again_once_a_prompt_is_saved(cast):
    shot = ShotFactory(project=cast.project, prompt="")
    content = edit(cast.editor, shot, shot_data(), **HTMX).content.decode()
    assert "Saved. Everyone on the board sees the change." in content
    assert 'id="generate-why"' not in content


def test_it_flashes_the_problem_after_a_plain_save_with_an_empty_prompt(cast):
    response = edit(cast.editor, cast.shot, shot_data(prompt=""), follow=True)
    assert "Shot saved — but it can’t be generated yet: Write a prompt first." in \
        response.content.decode()


@pytest.mark.parametrize("role", READ_ONLY)
def test_it_tells_read_only_roles_what_they_can_do_in_the_editor(cast, role):
    shot = ShotFactory(project=cast.project, prompt="")
    content = client_for(cast.member(role)).get(reverse("sb:shot", args=[shot.pk])) \
        .content.decode()
    assert 'id="read-only-note"' in content
    assert {"viewer": "as a viewer you cannot change it",
            "reviewer": "As a reviewer you approve or send back this shot's takes"}[role] \
        in content
    assert "Write a prompt first." not in content
    assert 'id="generate"' not in content


def test_it_does_not_show_editors_the_read_only_note(cast):
    content = client_for(cast.editor).get(reverse("sb:shot", args=[cast.shot.pk])) \
        .content.decode()
    assert 'id="read-only-note"' not in content


# shot_edit: the frame a continuing shot starts from


def _chained_pair(cast):
    from tests.factories import GenerationFactory

    before = ShotFactory(project=cast.project, title="Cliff", position=100)
    take = GenerationFactory(shot=before)
    before.selected_take = take
    before.save(update_fields=["selected_take"])
    after = ShotFactory(project=cast.project, title="Window", position=101, continues_from=before,
                        mode="image", endpoint="bytedance/seedance-2.0/fast/image-to-video")
    return before, take, after


@pytest.mark.parametrize("role", [*WRITERS, *READ_ONLY])
def test_it_shows_a_continuing_shot_the_poster_it_starts_from(cast, role):
    _, take, after = _chained_pair(cast)
    content = client_for(cast.member(role)).get(reverse("sb:shot", args=[after.pk])) \
        .content.decode()
    assert reverse("sb:take-file", args=[take.uid, "poster"]) in content
    assert f"Starts from Cliff, take #{take.pk}, its last frame." in content
    # Looking does not capture the frame of a take that finished before capture existed.
    take.refresh_from_db()
    assert not take.last_frame


def test_it_shows_the_captured_last_frame_and_its_timecode(cast):
    _, take, after = _chained_pair(cast)
    Generation.objects.filter(pk=take.pk).update(last_frame="frames/last.png",
                                                 last_frame_at=4 + 23 / 24)
    content = client_for(cast.viewer).get(reverse("sb:shot", args=[after.pk]), **HTMX) \
        .content.decode()
    assert reverse("sb:take-file", args=[take.uid, "last-frame"]) in content
    assert f"Starts from Cliff, take #{take.pk}, 00:00:04:23 (its last frame)." in content


def test_it_says_when_the_upstream_shot_has_no_finished_take(cast):
    before = ShotFactory(project=cast.project, title="Cliff", position=100)
    after = ShotFactory(project=cast.project, title="Window", position=101, continues_from=before)
    content = client_for(cast.editor).get(reverse("sb:shot", args=[after.pk])).content.decode()
    assert "Waiting for Cliff’s take: this shot starts from its last frame" in content


def test_it_shows_no_chain_for_an_unchained_shot(cast):
    content = client_for(cast.editor).get(reverse("sb:shot", args=[cast.shot.pk])) \
        .content.decode()
    assert 'id="chain-from"' not in content


# Byte ranges: players seek by asking for part of a file.


@pytest.mark.parametrize(("header", "status", "content_range", "body"), [
    ("bytes=2-5", 206, "bytes 2-5/10", b"2345"),
    ("bytes=7-", 206, "bytes 7-9/10", b"789"),
    ("bytes=-3", 206, "bytes 7-9/10", b"789"),
    ("bytes=8-100", 206, "bytes 8-9/10", b"89"),
    ("bytes=10-12", 416, "bytes */10", b""),
    ("bytes=5-2", 416, "bytes */10", b""),
    ("bytes=0-1,4-5", 200, None, b"0123456789"),
    ("items=0-1", 200, None, b"0123456789"),
    ("", 200, None, b"0123456789"),
])
def test_a_take_is_served_by_byte_range(cast, header, status, content_range, body):
    from django.core.files.base import ContentFile

    from tests.factories import GenerationFactory

    take = GenerationFactory(shot=cast.shot, video=ContentFile(b"0123456789", name="v.mp4"))
    extra = {"HTTP_RANGE": header} if header else {}
    response = client_for(cast.viewer).get(
        reverse("sb:take-file", args=[take.uid, "video"]), **extra)
    assert response.status_code == status
    assert response.get("Content-Range") == content_range
    content = b"".join(response.streaming_content) if response.streaming else response.content
    assert content == body
    if status != 416:
        assert response["Accept-Ranges"] == "bytes"


@pytest.mark.parametrize("value", ["", "1", "2", "9"])
def test_the_editors_lists_are_written_as_djangos_select_writes_them(value):
    import re

    from django import forms

    from storyboard.forms import ListSelect

    choices = [("", "— none —"), ("1", "Tom & Jerry <b>"), ("Scene “1”", [("2", "Dawn")])]
    attrs = {"id": "id_continues_from", "required": True, "aria-describedby": "help"}

    def written(widget_class) -> str:
        html = widget_class(choices=choices).render("continues_from", value, attrs=attrs)
        return re.sub(r">\s+<", "><", str(html)).strip()

    assert written(ListSelect) == written(forms.Select)
    assert ('value="1" selected' in written(ListSelect)) is (value == "1")
