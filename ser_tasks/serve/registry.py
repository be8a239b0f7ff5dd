"""The model registry: each trained model as a version with its scores, and the ``champion`` alias.

A new version becomes ``champion`` when the registered model has none, or when its test UA beats
the champion's on the same split (the same manifest fingerprint: the same clips, the same test
speakers). Otherwise it becomes ``challenger``, and its ``promotion`` tag says why. UAs measured on
different test speakers are not comparable, so such a version never replaces the champion by
itself; ``ser promote VERSION`` moves the alias by hand. MLflow aliases replace the deprecated
registry stages (NOTES.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException

from ser_tasks.errors import InputError

CHAMPION, CHALLENGER = "champion", "challenger"


def model_version(model_uri: str) -> tuple[str, str] | None:
    """``(name, version)`` of a ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` URI, else ``None``.

    Raises:
        MlflowException: the alias or version does not exist.
    """
    if not model_uri.startswith("models:/"):
        return None
    ref = model_uri.removeprefix("models:/").rstrip("/")
    client = mlflow.MlflowClient()
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return name, client.get_model_version_by_alias(name, alias).version
    name, _, version = ref.rpartition("/")
    return (name, version) if name and version.isdigit() else None



@dataclass(frozen=True)
class Promotion:
    """The alias a version was given and why.

    Attributes:
        version: the registered model version.
        alias: :data:`CHAMPION` or :data:`CHALLENGER`.
        reason: one sentence, also the version's ``promotion`` tag.
    """

    version: int
    alias: str
    reason: str


def version_tags(scores: dict, manifest_fingerprint: str, store_group: str, git_commit: str) -> dict[str, str]:
    """Tags every registered version carries: its test scores and where its data and code came from.

    ``test_ua``, ``test_wa``, ``test_macro_f1`` (from ``scores``'s ``ua``, ``wa``, ``macro_f1``),
    ``manifest_fingerprint``, ``store_group``, ``git_commit``.
    """
    return {"test_ua": f"{scores['ua']:.6f}", "test_wa": f"{scores['wa']:.6f}",
            "test_macro_f1": f"{scores['macro_f1']:.6f}", "manifest_fingerprint": manifest_fingerprint,
            "store_group": store_group, "git_commit": git_commit}


def champion(name: str, client: mlflow.MlflowClient | None = None):
    """The ``champion`` version of registered model ``name`` (a ``ModelVersion``), or ``None``."""
    client = client or mlflow.MlflowClient()
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def promote_if_better(name: str, version: int, client: mlflow.MlflowClient | None = None) -> Promotion:
    """Give a freshly tagged version (:func:`version_tags`) the ``champion`` or ``challenger`` alias.

    Args:
        name: registered model name.
        version: the new version; its tags ``test_ua`` and ``manifest_fingerprint`` are compared
            with the champion's.
        client: an MLflow client (default: the current tracking and registry URIs).

    Returns:
        The :class:`Promotion`; the reason is also set as the version's ``promotion`` tag.
    """
    client = client or mlflow.MlflowClient()
    new = client.get_model_version(name, str(version))
    ua, fingerprint = float(new.tags.get("test_ua", "nan")), new.tags.get("manifest_fingerprint", "")
    best = champion(name, client)
    if best is None or str(best.version) == str(version):
        alias, reason = CHAMPION, f"v{version} is the first champion of {name} (test UA {ua:.4f})"
    else:
        best_ua = float(best.tags.get("test_ua", "nan"))
        same = bool(fingerprint) and best.tags.get("manifest_fingerprint") == fingerprint
        if same and (ua > best_ua or math.isnan(best_ua)):
            alias, reason = CHAMPION, (f"v{version}'s test UA {ua:.4f} beats champion v{best.version}'s "
                                       f"{best_ua:.4f} on the same split")
        elif same:
            alias, reason = CHALLENGER, (f"v{version}'s test UA {ua:.4f} does not beat champion v{best.version}'s "
                                         f"{best_ua:.4f} on the same split")
        else:
            alias, reason = CHALLENGER, (
                f"champion v{best.version} was scored on another split (manifest "
                f"{(best.tags.get('manifest_fingerprint') or '?')[:12]}, this one {fingerprint[:12] or '?'}), so the "
                f"test UAs ({best_ua:.4f} against {ua:.4f}) are not comparable; `ser promote {version}` to choose it")
    _set_alias(client, name, alias, version)
    settled = _settle(name, fingerprint, client)
    if alias == CHAMPION and settled is not None and str(settled.version) != str(version):
        # another registration on this split raced this one and has the higher UA
        alias, reason = CHALLENGER, (f"v{version}'s test UA {ua:.4f} does not beat v{settled.version}'s "
                                     f"{float(settled.tags['test_ua']):.4f} on the same split (registered at "
                                     "the same time)")
        _set_alias(client, name, alias, version)
    client.set_model_version_tag(name, str(version), "promotion", reason)
    return Promotion(int(version), alias, reason)


def _settle(name: str, fingerprint: str, client: mlflow.MlflowClient):
    """The champion once registrations that ran at the same time on one split have all promoted.

    Two registrations may each read the champion before the other sets it, and the last to set
    the alias wins whatever its UA. So every automatic promotion ends here: when the champion is of
    this split and was not chosen by hand, it becomes the version of this split with the highest
    test UA, the earliest on a tie (what one registration after another would have chosen). A
    version's tags are set before it promotes, so the last registration to settle sees every one,
    and the alias ends where the rule puts it.

    Returns:
        The champion ``ModelVersion`` after settling, or ``None`` when there is none.
    """
    current = champion(name, client)
    if (current is None or not fingerprint or current.tags.get("manifest_fingerprint") != fingerprint
            or "by hand" in current.tags.get("promotion", "")):
        return current
    scored = []
    for v in client.search_model_versions(f"name='{name}'"):
        ua = float(v.tags.get("test_ua", "nan"))
        if v.tags.get("manifest_fingerprint") == fingerprint and not math.isnan(ua):
            scored.append((ua, -int(v.version), v))
    if not scored:
        return current
    best = max(scored, key=lambda t: t[:2])[2]
    if str(best.version) != str(current.version):
        _set_alias(client, name, CHAMPION, int(best.version))
        return best
    return current


def _set_alias(client: mlflow.MlflowClient, name: str, alias: str, version: int) -> None:
    """Point ``alias`` at ``version``; a champion stops being the challenger."""
    client.set_registered_model_alias(name, alias, str(version))
    if alias == CHAMPION:
        try:
            if str(client.get_model_version_by_alias(name, CHALLENGER).version) == str(version):
                client.delete_registered_model_alias(name, CHALLENGER)
        except MlflowException:
            pass


def promote(name: str, version: int, client: mlflow.MlflowClient | None = None) -> Promotion:
    """Make ``version`` the champion by hand (``ser promote``), whatever its scores.

    Raises:
        InputError: the version does not exist (message names it).
    """
    client = client or mlflow.MlflowClient()
    try:
        client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise InputError(f"registered model {name!r} has no version {version}") from exc
    previous = champion(name, client)
    reason = (f"v{version} promoted by hand" +
              (f", replacing v{previous.version}"
               if previous is not None and str(previous.version) != str(version) else ""))
    _set_alias(client, name, CHAMPION, version)
    client.set_model_version_tag(name, str(version), "promotion", reason)
    return Promotion(int(version), CHAMPION, reason)


def encoder_figures(name: str) -> dict[str, float]:
    """What a registered model's encoder weighs and costs to load (logged with the model).

    Returns:
        ``encoder_parameters`` (count), ``encoder_weight_mib`` (its weight file, MiB) and
        ``encoder_load_seconds`` (reading the weights and building the network in a fresh
        :class:`ser_tasks.signal.encoder.Encoder`, wall clock).
    """
    import time

    from ser_tasks.signal.encoder import Encoder

    t0 = time.perf_counter()
    encoder = Encoder(name)
    seconds = time.perf_counter() - t0
    files = [f for f in ("model.bin", "model.safetensors") if (encoder.folder / f).is_file()]
    size = (encoder.folder / files[0]).stat().st_size if files else 0
    return {"encoder_parameters": float(encoder.network.count_params()), "encoder_weight_mib": round(size / 2**20, 2),
            "encoder_load_seconds": round(seconds, 3)}


def register_model(model_path, normalizer_path, config, vocabulary: list[str], scores: dict, tags: dict) -> dict:
    """Log the raw-audio model of a training run, register it as a new version, tag it and promote it.

    Args:
        model_path: the trained zoo model (``.keras``).
        normalizer_path: its ``normalizer.json``.
        config: the :class:`ser_tasks.config.PipelineConfig` it was trained with (audio, features,
            model; ``tracking.registered_model`` names it).
        vocabulary: the class labels, in the model's output order.
        scores: its test scores (``ua``, ``wa``, ``macro_f1``).
        tags: the training run's tags (``manifest_fingerprint``, ``store_group``, ``git_commit``).

    Returns:
        ``{"model_name", "model_version", "model_uri" (the registry's ``models:/NAME/VERSION``, as
        ``ser score`` tags its runs), "logged_model_uri" (MLflow's ``models:/m-...`` of the logged
        model), "alias", "promotion"}``; the alias and the reason are also set as the active run's
        tags ``model_alias`` and ``promotion``.
    """
    from ser_tasks.learn.models import MODEL_INPUTS
    from ser_tasks.serve.predict import Preprocessing, log_emotion_model

    name = config.tracking.registered_model
    from ser_tasks.learn.training import trained_groups

    groups = trained_groups(model_path)  # the flags of the normalizer.json saved beside it
    prep = Preprocessing(config.audio, config.features, MODEL_INPUTS[config.train.model], tuple(vocabulary),
                         config.train.model, groups == "speaker", groups == "corpus")
    info = log_emotion_model(model_path, normalizer_path, prep, name)
    if config.features.encoder:
        mlflow.log_metrics(encoder_figures(config.features.encoder))
    version = int(info.registered_model_version)
    client = mlflow.MlflowClient()
    for key, value in version_tags(scores, tags["manifest_fingerprint"], tags["store_group"],
                                   tags["git_commit"]).items():
        client.set_model_version_tag(name, str(version), key, value)
    promotion = promote_if_better(name, version, client)
    mlflow.set_tags({"model_alias": promotion.alias, "promotion": promotion.reason})
    return {"model_name": name, "model_version": version, "model_uri": f"models:/{name}/{version}",
            "logged_model_uri": info.model_uri, "alias": promotion.alias, "promotion": promotion.reason}
