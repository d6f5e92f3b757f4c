"""Data tables and builders for the Altavia Logistics demo data.

Everything here is invented. ``demo/make_data.py`` imports these modules and
writes all demo files; edit the tables here, then rerun the script.
"""
