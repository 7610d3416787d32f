"""The embedded default: the whole system on one machine, moto in place of AWS."""
