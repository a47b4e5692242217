"""Token analyses: usage, meaning (purity / MI), consistency and stability of integer tracks;
k-means units of float hooks (``workbench tokens``)."""
