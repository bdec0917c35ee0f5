"""ondol home: the deterministic device layer the assistant drives (design: docs/home.md).

Device types and their capabilities (``devices``, ``capabilities``), the home file, target names,
the state store and drivers. Every action is defined by a JSON Schema and validated before it
changes anything, so the layer works, and is tested, without any language model.
"""
