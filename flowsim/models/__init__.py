"""Network models: flat parameter vectors, compiled loss and gradient, initialization.

Models are plug-ins of the integrator core (:mod:`flowsim.integrate.core`),
which reaches them only through the C callbacks of :mod:`flowsim._abi`; this
package does not import :mod:`flowsim.integrate`.  A model family is three
things:

1. its **layout and initialization**: a subclass of
   :class:`flowsim.models._base.Model` that sets ``kind`` (a short name),
   ``layers`` (ordered ``(name, shape)`` pairs: the layout of ``theta``),
   ``neuron_layer`` (the layer the ``"norm"`` event watches), and implements
   ``dims()`` (the integers its kernels need, an int64 array read from the
   front), ``flow_constants(scales) -> (c, T)`` (the float constants of the
   normalized flow and its time scale), ``init(seed, ...)`` and, if its data
   are not rows ``x`` of a matrix, ``prepare_data(X, y)`` (the one place that
   checks the data and puts them in the kernels' form: one C-contiguous
   float64 matrix with a row per sample, and ``y`` float64);
2. its **kernel template**: a module whose body (after the
   ``# --- template body ---`` marker) defines every function of
   :data:`flowsim._abi.INTERFACE` with exactly those arguments (``flow``,
   ``loss``, ``layer_norms``, ``max_neuron_norm``, the kink functions
   ``switch_*`` - no-op stand-ins in :mod:`flowsim.models._smooth_switching`
   for a family without kinks - and ``newton_*``, stand-ins returning False
   where there is no analytic Jacobian factor, as in the three-layer
   template), plus ``predict``.  It evaluates the activation through
   :func:`flowsim._abi.activate` (sigma and up to two derivatives over a vector of
   pre-activations) on the address the family puts in its ``dims``
   (``self.activation.address``), and may call :func:`flowsim._dense.dense_eval`;
3. ``_template`` pointing at that module (and ``_model_source`` if it appends
   stand-ins).

The base class generates the module of callbacks, once per machine for every
activation (an activation compiles only its own small callback), and
:func:`flowsim.simulate`, events, saving, the store and sweeps work unchanged.
The two- and three-layer nets and the attention layers
(:mod:`flowsim.models.attention`, :mod:`flowsim.models.token_attention`) are built
this way; :class:`UserModel` is the same interface around a user's own Numba
loss-and-gradient function.
"""

from flowsim.models.attention import Attention
from flowsim.models.three_layer import ThreeLayer
from flowsim.models.token_attention import TokenAttention
from flowsim.models.two_layer import TwoLayer
from flowsim.models.user import UserModel

__all__ = ["Attention", "ThreeLayer", "TokenAttention", "TwoLayer", "UserModel"]
