"""Trace-driven economics simulator: the SAME policy code as the live head, on a discrete-event model."""

from etrid_ray.sim.engine import SimResult, Simulator, simulate
from etrid_ray.sim.scenario import Scenario, SimSettings, build_scenario
from etrid_ray.sim.trace import BadRow, SimJob, Trace, TraceError, load_trace, parse_trace, philly_trace

__all__ = ["BadRow", "Scenario", "SimJob", "SimResult", "SimSettings", "Simulator", "Trace", "TraceError",
           "build_scenario", "load_trace", "parse_trace", "philly_trace", "simulate"]
