"""Tests of the Re-ID data of STL step 1 (stl_search.data.reid)."""
