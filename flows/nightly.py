"""Deployment entry points (see deployments.yaml): the nightly and backfill flows.

The flows live in the package (``nightloop.flows``) so that ``nightloop run``
and ``nightloop serve`` work from an installed package too; this file is what
``prefect deploy --prefect-file deployments.yaml --all`` points at.
"""

from nightloop.flows import backfill, nightly

__all__ = ["backfill", "nightly"]

if __name__ == "__main__":
    nightly()
