"""The calibration zoo: model families of known lineage, built on the CPU."""
