"""Wave measurements: space-time images, 2D FFT, wave speed and score, onset decoding, figures,
and the linear ring's spectrum."""

from .callback import WaveAnalysis
from .fft import power_spectrum
from .onset import OnsetDecoding, onset_decoding
from .options import AnalysisOptions
from .record import impulse_inputs, record_states, ring_shape
from .report import Analysis, analyze, write_report
from .spacetime import spacetime_images
from .spectrum import ring_spectrum, wave_speeds
from .speed import WaveMeasure, measure_ring, measure_waves

__all__ = [
    "Analysis",
    "AnalysisOptions",
    "OnsetDecoding",
    "WaveAnalysis",
    "WaveMeasure",
    "analyze",
    "impulse_inputs",
    "measure_ring",
    "measure_waves",
    "onset_decoding",
    "power_spectrum",
    "record_states",
    "ring_shape",
    "ring_spectrum",
    "spacetime_images",
    "wave_speeds",
    "write_report",
]
