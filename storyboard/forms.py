from __future__ import annotations

import copy
from collections.abc import Callable

from django import forms
from django.utils.html import format_html, format_html_join

from storyboard import catalogue, webhooks
from storyboard.models import (
    SUBSCRIBABLE_EVENTS,
    Asset,
    Project,
    ReviewLink,
    Scene,
    SeamThresholds,
    Shot,
)
from storyboard.money import MoneyError, decimal_text, parse_usd

# Reference-to-video limits from the Seedance 2.0 documents.
MAX_REFERENCE_IMAGES = 9
MAX_REFERENCE_VIDEOS = 3
MAX_REFERENCE_AUDIO = 3
MAX_REFERENCE_FILES = 12
SEED_MAX = 2**32 - 1


class MoneyField(forms.CharField):
    """Dollars as typed ("1,250.50", "$0.3024"), cleaned to exact integer micro-dollars."""

    def to_python(self, value: str | None) -> int | None:
        value = super().to_python(value)
        if value in self.empty_values:
            return None
        try:
            return parse_usd(value)
        except MoneyError as e:
            raise forms.ValidationError(e.message) from None


def _parameter_fields() -> dict[str, forms.Field]:
    return {
        "resolution": forms.ChoiceField(choices=[(r, r) for r in catalogue.PIXEL_SIZES]),
        "aspect_ratio": forms.ChoiceField(choices=[(a, a) for a in catalogue.ASPECT_RATIOS]),
        "duration": forms.ChoiceField(choices=catalogue.all_durations()),
    }


class ProjectForm(forms.ModelForm):
    resolution = _parameter_fields()["resolution"]
    aspect_ratio = _parameter_fields()["aspect_ratio"]
    duration = _parameter_fields()["duration"]
    spend_cap = MoneyField(
        required=False, label="Spend cap (USD)",
        help_text="Optional. Leave empty to use only the team budget.",
    )

    class Meta:
        model = Project
        fields = ("name", "description", "default_endpoint", "default_generate_audio")
        labels = {"default_endpoint": "Seedance endpoint",
                  "default_generate_audio": "Generate audio"}
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args, can_budget: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        project = self.instance
        if not can_budget:
            # Money limits are for owners and producers; editors keep whatever is set.
            del self.fields["spend_cap"]
        self.initial.setdefault("resolution", project.default_resolution)
        self.initial.setdefault("aspect_ratio", project.default_aspect_ratio)
        self.initial.setdefault("duration", project.default_duration)
        if project.spend_cap_micros is not None:
            self.initial.setdefault("spend_cap", decimal_text(project.spend_cap_micros))
        self.order_fields(["name", "description", "default_endpoint", "resolution",
                           "aspect_ratio", "duration", "default_generate_audio", "spend_cap"])

    def clean(self) -> dict:
        data = super().clean()
        if {"default_endpoint", "resolution", "duration", "aspect_ratio"} <= data.keys():
            errors = catalogue.validate_parameters(
                endpoint=data["default_endpoint"], resolution=data["resolution"],
                duration=data["duration"], aspect_ratio=data["aspect_ratio"],
            )
            for field, message in errors.items():
                self.add_error("default_endpoint" if field == "endpoint" else field, message)
        return data

    def save(self, commit: bool = True) -> Project:
        project = super().save(commit=False)
        project.default_resolution = self.cleaned_data["resolution"]
        project.default_aspect_ratio = self.cleaned_data["aspect_ratio"]
        project.default_duration = self.cleaned_data["duration"]
        if "spend_cap" in self.fields:
            # Cleaned to integer micro-dollars by MoneyField (None: no cap).
            project.spend_cap_micros = self.cleaned_data.get("spend_cap")
        if commit:
            project.save()
        return project


def _attrs(attrs: dict) -> str:
    # As django/forms/widgets/attrs.html writes them: in order, True bare, False left out.
    return format_html_join("", "{}", ((
        format_html(" {}", name) if value is True else format_html(' {}="{}"', name, value),)
        for name, value in attrs.items() if value is not False))


class ListSelect(forms.Select):
    """A select whose options are written here rather than through Django's option template:
    rendered one template each, a 300-shot project's "Continues from" list took 50 ms of
    every editor answer. The same markup as Django's select.html."""

    def render(self, name, value, attrs=None, renderer=None) -> str:
        widget = self.get_context(name, value, attrs)["widget"]
        parts = []
        for group, options, _index in widget["optgroups"]:
            items = format_html_join("", '<option value="{}"{}>{}</option>', (
                (option["value"], _attrs(option["attrs"]), option["label"])
                for option in options))
            parts.append(format_html('<optgroup label="{}">{}</optgroup>', group, items)
                         if group else items)
        return format_html('<select name="{}"{}>{}</select>', widget["name"],
                           _attrs(widget["attrs"]), format_html_join("", "{}", (
                               (part,) for part in parts)))


class ShotForm(forms.ModelForm):
    resolution = _parameter_fields()["resolution"]
    aspect_ratio = _parameter_fields()["aspect_ratio"]
    duration = _parameter_fields()["duration"]
    seed = forms.IntegerField(required=False, min_value=0, max_value=SEED_MAX,
                              help_text="Empty for a random seed each take.")
    # The shot's version when the editor was opened: the history since then tells which fields
    # a collaborator changed meanwhile (editing.save_shot merges the rest).
    version = forms.CharField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = Shot
        fields = Shot.EDITABLE
        widgets = {
            "prompt": forms.Textarea(attrs={"rows": 5}),
            "notes": forms.Textarea(attrs={"rows": 2}),
            "references": forms.CheckboxSelectMultiple,
            **{name: ListSelect for name in ("scene", "start_frame", "end_frame",
                                              "continues_from")},
        }
        labels = {"continues_from": "Continues from",
                  "num_frames": "Frames (1.0 only)", "safety_checker": "Safety checker (1.0)",
                  "camera_fixed": "Fixed camera (1.0 only)"}
        help_texts = {"num_frames": "29–289 at 24 fps; overrides the duration."}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        project = self.instance.project
        assets = project.assets.all()
        self.fields["scene"].queryset = project.scenes.all()
        self.initial["version"] = self.instance.version
        self.fields["start_frame"].queryset = assets.images()
        self.fields["end_frame"].queryset = assets.images()
        self.fields["references"].queryset = assets
        # Any other shot of the project; the board's order is no part of a link.
        # Only what an option shows: whole rows of a 300-shot project were most of the list's
        # cost, read at every render.
        self.fields["continues_from"].queryset = project.shots.exclude(
            pk=self.instance.pk).only("pk", "project", "title")
        # The board's order, read once: numbers for the options, and the previous shot.
        self.board_order = [shot for _, group in project.board(
            Shot.objects.only("pk", "project", "scene", "position", "title"))
            for shot in group]
        self.fields["continues_from"].label_from_instance = self._numbered_label(
            self.board_order)
        self.fields["continues_from"].help_text = (
            "Each take starts from the last frame of that shot's chosen take.")
        for name in ("start_frame", "end_frame", "scene", "continues_from"):
            self.fields[name].empty_label = "— none —"

    @classmethod
    def deferred(cls, shot: Shot) -> Callable[[], ShotForm]:
        """An unbound form of `shot` as it is now, built only when called (after commit, by a
        push that renders its fields): building one reads the project's assets and order."""
        snapshot = copy.copy(shot)
        return lambda: cls(instance=snapshot)

    def previous_shot(self) -> Shot | None:
        """The shot just before this one on the board: what "continue from the previous shot"
        links to (from the order the form already read)."""
        ids = [shot.pk for shot in self.board_order]
        if self.instance.pk not in ids or ids.index(self.instance.pk) == 0:
            return None
        index = ids.index(self.instance.pk)
        previous = self.board_order[index - 1]
        previous._number = index
        return previous

    @staticmethod
    def _numbered_label(order: list[Shot]) -> Callable[[Shot], str]:
        """Options named as the board names them, untitled shots by their number, counted in
        one pass here: counted per option, a 300-shot board's editor ran 150 queries."""
        numbers = {shot.pk: n for n, shot in enumerate(order, start=1)}

        def label(shot: Shot) -> str:
            shot._number = numbers.get(shot.pk, 0)
            return shot.display_title

        return label

    def clean(self) -> dict:
        data = super().clean()
        endpoint = catalogue.ENDPOINTS.get(data.get("endpoint", ""))
        if endpoint and {"resolution", "duration", "aspect_ratio"} <= data.keys():
            errors = catalogue.validate_parameters(
                endpoint=endpoint.id, resolution=data["resolution"],
                duration=data["duration"], aspect_ratio=data["aspect_ratio"],
            )
            for field, message in errors.items():
                self.add_error(field, message)
            if data.get("mode") and endpoint.mode != data["mode"]:
                self.add_error("endpoint", f"{endpoint.label} is not a "
                               f"{Shot.Mode(data['mode']).label.lower()} endpoint.")
            if data.get("end_frame") and not endpoint.supports_end_frame:
                self.add_error("end_frame", f"{endpoint.label} does not take an end frame.")
            frames = data.get("num_frames")
            if frames is not None:
                if "num_frames" not in endpoint.extra:
                    self.add_error("num_frames", "Only Seedance 1.0 takes a frame count; "
                                   "clear it or pick a 1.0 endpoint.")
                elif not 29 <= frames <= 289:
                    self.add_error("num_frames", "Seedance 1.0 takes 29 to 289 frames.")
        upstream = data.get("continues_from")
        # Offered beside a link refused for its text-to-video endpoint (the editor's button).
        self.switch_to = None
        if upstream is not None and endpoint and endpoint.mode != catalogue.Mode.IMAGE:
            self.switch_to = catalogue.image_endpoint_for(endpoint.id)
        if upstream is not None:
            for problem in self.instance.link_problems(upstream,
                                                       endpoint=data.get("endpoint") or None):
                self.add_error("continues_from", problem)
            if data.get("start_frame"):
                self.add_error("start_frame", "A continuing shot starts from its upstream's "
                               "last frame; clear the start frame or the link.")
        refs = list(data.get("references") or [])
        self._check_references(refs)
        return data

    def _check_references(self, refs: list[Asset]) -> None:
        counts = {kind: sum(1 for a in refs if a.kind == kind) for kind in Asset.Kind.values}
        problems = []
        if counts["image"] > MAX_REFERENCE_IMAGES:
            problems.append(f"{counts['image']} images selected; at most {MAX_REFERENCE_IMAGES}.")
        if counts["video"] > MAX_REFERENCE_VIDEOS:
            problems.append(f"{counts['video']} videos selected; at most {MAX_REFERENCE_VIDEOS}.")
        if counts["audio"] > MAX_REFERENCE_AUDIO:
            problems.append(f"{counts['audio']} audio files; at most {MAX_REFERENCE_AUDIO}.")
        if len(refs) > MAX_REFERENCE_FILES:
            problems.append(f"{len(refs)} files in all; at most {MAX_REFERENCE_FILES}.")
        if counts["audio"] and not (counts["image"] or counts["video"]):
            problems.append("Audio references need at least one image or video reference.")
        videos = [a for a in refs if a.kind == "video"]
        video_seconds = sum(a.duration or 0 for a in videos)
        if videos and not 2 <= video_seconds <= 15:
            problems.append(f"Reference videos run {video_seconds:.1f} s together; "
                            "Seedance takes 2–15 s.")
        if sum(a.size for a in videos) > 50 * 1024 * 1024:
            problems.append("Reference videos must be under 50 MB together.")
        audio_seconds = sum(a.duration or 0 for a in refs if a.kind == "audio")
        if audio_seconds > 15:
            problems.append(f"Reference audio runs {audio_seconds:.1f} s together; "
                            "at most 15 s.")
        for problem in problems:
            self.add_error("references", problem)

    def save(self, commit: bool = True) -> Shot:
        shot = super().save(commit=False)
        for name in ("resolution", "aspect_ratio", "duration"):
            setattr(shot, name, self.cleaned_data[name])
        if commit:
            shot.save()
            self.save_m2m()
        return shot

    def values(self) -> dict[str, object]:
        """The cleaned submission as `Shot.field_values` gives a stored shot."""
        values: dict[str, object] = {}
        for name in Shot.EDITABLE:
            value = self.cleaned_data.get(name)
            if name == "references":
                value = sorted(asset.pk for asset in value or [])
            elif name in Shot.RELATED:
                value = value.pk if value else None
            values[name] = value
        return values

    @staticmethod
    def data_for(values: dict[str, object], *, version: str) -> dict[str, object]:
        """What a browser would post for `values` (the inverse of `values`)."""
        data: dict[str, object] = {"version": version}
        for name, value in values.items():
            if name == "references":
                data[name] = [str(pk) for pk in value]
            elif isinstance(value, bool):
                if value:
                    data[name] = "on"
            else:
                data[name] = "" if value is None else str(value)
        return data

    def warnings(self) -> list[str]:
        """What stops the saved shot from being generated (drafts may still be saved)."""
        return self.instance.problems() if self.instance.pk else []


class NewShotForm(forms.Form):
    title = forms.CharField(max_length=120, required=False)
    scene = forms.ModelChoiceField(queryset=Scene.objects.none(), required=False)

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["scene"].queryset = project.scenes.all()


class SceneForm(forms.ModelForm):
    class Meta:
        model = Scene
        fields = ("title",)


class BudgetForm(forms.Form):
    limit = MoneyField(label="Monthly limit (USD)")
    reset_day = forms.IntegerField(min_value=1, max_value=28, required=False,
                                   label="New period starts on day")


class SeamThresholdsForm(forms.Form):
    """Where a team draws the lines between match, check and drift (storyboard/seams.py)."""

    FIELDS = ("match_delta_e", "drift_delta_e", "match_ssim", "drift_ssim")

    # Mean CIEDE2000 stays far below 100 for any two frames; SSIM is at most 1.
    match_delta_e = forms.FloatField(min_value=0, max_value=100, label="Match up to ΔE")
    drift_delta_e = forms.FloatField(min_value=0, max_value=100, label="Drift from ΔE")
    match_ssim = forms.FloatField(min_value=0, max_value=1, label="Match from SSIM")
    drift_ssim = forms.FloatField(min_value=0, max_value=1, label="Drift up to SSIM")

    def clean(self) -> dict:
        data = super().clean()
        if {"match_delta_e", "drift_delta_e"} <= data.keys() \
                and data["match_delta_e"] >= data["drift_delta_e"]:
            self.add_error("drift_delta_e", "The drift line must be above the match line "
                                            f"(ΔE {data['match_delta_e']:g}): a larger colour "
                                            "difference is worse.")
        if {"match_ssim", "drift_ssim"} <= data.keys() \
                and data["drift_ssim"] >= data["match_ssim"]:
            self.add_error("drift_ssim", "The drift line must be below the match line "
                                         f"(SSIM {data['match_ssim']:g}): a lower similarity "
                                         "is worse.")
        return data

    @classmethod
    def of(cls, thresholds: SeamThresholds) -> SeamThresholdsForm:
        return cls(initial={name: getattr(thresholds, name) for name in cls.FIELDS})

    def values(self) -> dict[str, float]:
        return {name: self.cleaned_data[name] for name in self.FIELDS}


class ReviewLinkForm(forms.Form):
    """What a producer or owner chooses when sharing for review (storyboard/sharing.py checks
    it again, as it does for every caller)."""

    label = forms.CharField(max_length=120, required=False, label="Title",
                            help_text="Who it is for; the guest sees it as the page's title.")
    scope = forms.ChoiceField(choices=ReviewLink.Scope.choices, initial=ReviewLink.Scope.CUT,
                              widget=forms.RadioSelect, label="Share")
    link_shots = forms.ModelMultipleChoiceField(queryset=Shot.objects.none(), required=False,
                                                widget=forms.CheckboxSelectMultiple,
                                                label="Shots")
    expires_in = forms.TypedChoiceField(
        choices=[(1, "1 day"), (7, "7 days"), (30, "30 days")], coerce=int, initial=7,
        label="Works for")
    password = forms.CharField(required=False, max_length=128, strip=False,
                               widget=forms.PasswordInput(render_value=True),
                               help_text="Optional; send it separately from the link.")
    allow_decisions = forms.BooleanField(required=False,
                                         label="Guests may approve or request changes")

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["link_shots"].queryset = project.shots.all()
        self.fields["link_shots"].label_from_instance = lambda shot: shot.display_title

    def clean(self) -> dict:
        data = super().clean()
        if data.get("scope") == ReviewLink.Scope.SHOTS and not data.get("link_shots"):
            self.add_error("link_shots", "Choose at least one shot, or share the whole cut.")
        return data


EVENT_CHOICES = [(event.value, f"{event.value} — {event.label}") for event in SUBSCRIBABLE_EVENTS]


class WebhookEndpointForm(forms.Form):
    """A new endpoint (storyboard/webhooks.py checks the address and the rest again)."""

    url = forms.CharField(max_length=2000, label="Address",
                          help_text="Where to POST events: a public https:// address.",
                          widget=forms.URLInput(attrs={"placeholder": "https://"}))
    label = forms.CharField(max_length=100, required=False, label="Name",
                            help_text="Optional, to tell endpoints apart.")
    events = forms.MultipleChoiceField(choices=EVENT_CHOICES, widget=forms.CheckboxSelectMultiple,
                                       error_messages={"required": "Choose at least one event."})

    def clean_url(self) -> str:
        # Checked here too, so a refused address is said beside a missing event, not after it.
        try:
            return webhooks.check_url(self.cleaned_data["url"])
        except webhooks.WebhookRefused as e:
            raise forms.ValidationError(e.message) from e


class WebhookSettingsForm(forms.Form):
    """What an endpoint hears, and whether it hears anything."""

    label = forms.CharField(max_length=100, required=False, label="Name")
    events = forms.MultipleChoiceField(choices=EVENT_CHOICES, widget=forms.CheckboxSelectMultiple,
                                       error_messages={"required": "Choose at least one event."})
    active = forms.BooleanField(required=False, label="Send events to this endpoint")
