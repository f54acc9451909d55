"""Evidence from text alone: the parents score the suspect's sampled answers."""
