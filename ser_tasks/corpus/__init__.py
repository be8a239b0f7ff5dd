"""Corpora: from a folder of recordings to labelled, split clips.

One recipe per corpus (corpora), the manifest of labelled clips (manifest), the speaker-independent
split (split).
"""
