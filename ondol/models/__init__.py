"""Models shipped inside the ondol package. ``home-tiny/`` is the embedded device-control model
the assistant uses by default (its README.md is the model card; ``ondol train --recipe home-tiny``
makes it again)."""
