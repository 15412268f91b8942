"""Published generator / discriminator architectures, one module each, loadable from released weights.

Each module builds the network with the parameter names of the authors' code (so their state dicts load
strictly) and exposes it through :class:`lcm.Prior`. ``lcm.load_prior`` dispatches to them.
"""
