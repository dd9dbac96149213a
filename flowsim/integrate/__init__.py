"""Integrators: Runge-Kutta tableaus, the compiled stepping loops, ``simulate``.

The stepping modules (``control``, ``events``, ``explicit``, ``discrete``, ``stiff``,
``rosenbrock``, ``bdf``) are kernel templates: their bodies make up the integrator
core, compiled once per machine (:mod:`flowsim.integrate.core`).
"""
