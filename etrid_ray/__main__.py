"""``python -m etrid_ray`` runs the ``etrid-ray`` command line."""

from etrid_ray.cli import main

if __name__ == "__main__":
    main(prog_name="etrid-ray")
