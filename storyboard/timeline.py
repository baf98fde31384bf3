"""The cut as a timeline an editor opens: OpenTimelineIO, and CMX 3600 EDL and FCP 7 XML through
OTIO's adapters, or all three in a zip with the media beside them.

One video track and one audio track; each shot is a clip referencing its take's video by a
relative path (`media/…`, where the bundle puts it), a shot without a take is a gap of the
shot's duration. Every clip carries how it was made under metadata["storyboard"]: shot number,
title, prompt, endpoint, every parameter sent, seed, provider and request id, cost, review state
and approver. Comments on a take become markers at their frames.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import opentimelineio as otio

from storyboard import house
from storyboard.models import Comment, Generation, Project, ReviewDecision, Shot
from storyboard.money import usd

RATE = float(house.FPS)
MEDIA = "media"
# What each kind of timeline file is written as, by OTIO's adapter of that name.
ADAPTERS = {"otio": ("otio_json", "cut.otio"), "edl": ("cmx_3600", "cut.edl"),
            "fcpxml": ("fcp_xml", "cut.xml")}


@dataclass
class Entry:
    """One shot of the cut: its place on the board and the take that stands for it."""

    shot: Shot
    number: int
    take: Generation | None

    @property
    def label(self) -> str:
        return f"Shot {self.number} “{self.shot.display_title}”"


def media_name(entry: Entry) -> str:
    assert entry.take is not None
    return f"{MEDIA}/shot-{entry.number:03d}-take-{entry.take.pk}.mp4"


def build(*, project: Project, entries: list[Entry], frames_of: Callable[[Entry], int],
          media: Callable[[Entry], str] = media_name) -> otio.schema.Timeline:
    """The timeline of `entries`. `frames_of(entry)` is each clip's length in frames (a slate's
    for a shot without a take); `media(entry)` the URL its clip references."""
    timeline = otio.schema.Timeline(name=project.name)
    timeline.global_start_time = otio.opentime.RationalTime(0, RATE)
    timeline.metadata["storyboard"] = {"project": project.name, "project_id": project.pk,
                                       "team": project.team.name}
    video = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    audio = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
    comments = _comments([e.take.pk for e in entries if e.take])
    approvers = _approvers([e.take.pk for e in entries if e.take])
    for entry in entries:
        length = otio.opentime.TimeRange(otio.opentime.RationalTime(0, RATE),
                                         otio.opentime.RationalTime(frames_of(entry), RATE))
        about = provenance(entry, approver=approvers.get(entry.take.pk) if entry.take else "")
        if entry.take is None:
            for track in (video, audio):
                gap = otio.schema.Gap(source_range=length)
                gap.name = f"Shot {entry.number} (no take): {entry.shot.display_title}"
                gap.metadata["storyboard"] = about
                track.append(gap)
            continue
        for track in (video, audio):
            clip = otio.schema.Clip(
                name=f"Shot {entry.number} {entry.shot.display_title}",
                media_reference=otio.schema.ExternalReference(target_url=media(entry),
                                                              available_range=length),
                source_range=length)
            clip.metadata["storyboard"] = about
            if track is video:
                clip.markers.extend(_markers(comments.get(entry.take.pk, []), frames_of(entry)))
            track.append(clip)
    timeline.tracks.append(video)
    timeline.tracks.append(audio)
    return timeline


def provenance(entry: Entry, *, approver: str = "") -> dict:
    """How the shot's clip was made, in plain JSON types (OTIO metadata)."""
    shot, take = entry.shot, entry.take
    about = {"shot_number": entry.number, "shot_id": shot.pk, "title": shot.display_title,
             "prompt": shot.prompt, "review_state": shot.get_review_display(),
             "approver": approver}
    if take is None:
        about.update(take_id=None, endpoint=shot.endpoint, parameters={}, seed=shot.seed)
        return about
    about.update(
        take_id=take.pk, take_uid=str(take.uid), endpoint=take.endpoint,
        parameters=dict(take.input or {}), seed=take.seed, provider=take.provider,
        request_id=take.request_id, cost=usd(take.actual_micros or 0),
        cost_micros=take.actual_micros, simulated=take.simulated,
        prompt=(take.input or {}).get("prompt", shot.prompt))
    return about


def _comments(take_ids: list[int]) -> dict[int, list[Comment]]:
    found: dict[int, list[Comment]] = {}
    for comment in (Comment.objects.filter(take_id__in=take_ids, parent=None)
                    .select_related("user").order_by("frame", "created", "pk")):
        found.setdefault(comment.take_id, []).append(comment)
    return found


def _approvers(take_ids: list[int]) -> dict[int, str]:
    approvals = (ReviewDecision.objects.filter(take_id__in=take_ids,
                                               kind=ReviewDecision.Kind.APPROVE)
                 .select_related("user").order_by("created", "pk"))
    return {d.take_id: d.user.label if d.user else "" for d in approvals}


def _markers(comments: list[Comment], frames: int) -> list[otio.schema.Marker]:
    markers = []
    for comment in comments:
        start = min(comment.frame or 0, max(0, frames - 1))
        end = comment.frame_end if comment.frame_end is not None else start
        marker = otio.schema.Marker(
            name=comment.body[:200],
            marked_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(start, RATE),
                otio.opentime.RationalTime(max(0, min(end, frames - 1) - start), RATE)),
            color=otio.schema.MarkerColor.GREEN if comment.is_resolved
            else otio.schema.MarkerColor.RED)
        marker.metadata["storyboard"] = {
            "comment_id": comment.pk, "author": comment.user.label if comment.user else "",
            "body": comment.body, "frame": comment.frame, "frame_end": comment.frame_end,
            "resolved": comment.is_resolved}
        markers.append(marker)
    return markers


def write(timeline: otio.schema.Timeline, path: Path, *, kind: str) -> Path:
    adapter, _name = ADAPTERS[kind]
    if kind == "edl":
        # An EDL is one picture track; the sound comes with each event's reel.
        timeline = _video_only(timeline)
    otio.adapters.write_to_file(timeline, str(path), adapter_name=adapter)
    return path


def _video_only(timeline: otio.schema.Timeline) -> otio.schema.Timeline:
    copy = timeline.deepcopy()
    for track in list(copy.tracks):
        if track.kind != otio.schema.TrackKind.Video:
            copy.tracks.remove(track)
    return copy


def bundle(timeline: otio.schema.Timeline, out: Path, *, files: dict[str, Path],
           work: Path) -> Path:
    """A zip that opens on another machine: the timeline in all three formats at its top, the
    takes under media/ where the timelines' relative paths point."""
    with zipfile.ZipFile(out, "w") as archive:
        for kind, (_adapter, name) in ADAPTERS.items():
            archive.write(write(timeline, work / name, kind=kind), name,
                          compress_type=zipfile.ZIP_DEFLATED)
        for name, path in files.items():
            # Video does not compress; storing it keeps the zip quick to make and to open.
            archive.write(path, name, compress_type=zipfile.ZIP_STORED)
    return out


def frames_in(path: Path) -> int:
    return house.probe(path).frames
