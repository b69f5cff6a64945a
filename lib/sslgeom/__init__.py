"""ssl-geometry: the geometry of self-supervised representations, measured with NNK graphs.

Modules are imported explicitly (``from sslgeom import nnk, mgm``) so that ``import sslgeom``
stays cheap and does not import torch.
"""

__version__ = "0.1.0"
