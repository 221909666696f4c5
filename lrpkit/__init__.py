"""lrpkit: exact, batched Layer-wise Relevance Propagation for VGG-style networks.

The library behind the companion book to *In-Depth Hyperparameter Selection for Layer-Wise
Relevance Propagation* (TU Berlin, 2022).
"""
__version__ = "0.1.0"
