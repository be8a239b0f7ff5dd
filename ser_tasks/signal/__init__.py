"""Signal: from a recording to features.

Decoding and input limits (audio), augmentation (augment), features: log-mel, MFCC, ZCR, RMS, F0
(features, with their numba kernels), and the pretrained Whisper encoder (encoder).
"""
