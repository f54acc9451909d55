"""Rebuild the suspect: merge the parents with mergekit at the recipe that brings the merge
nearest the suspect, serve the merge like the suspect, and test whether the two can be told
apart. "We rebuilt it" is the strongest sentence a report can hold; a merge trained afterwards
stays measurably away from every rebuild."""
