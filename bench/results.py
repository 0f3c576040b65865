"""The measurements of one benchmark run, and the ratios printed at its end."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Measurement:
    """One measured number, with the row it fills in the results table."""

    section: str
    key: str  # stable identifier that ratios refer to
    label: str
    value: float
    unit: str
    detail: str = ""

    def formatted_value(self) -> str:
        if self.unit == "MB":
            return f"{self.value:.1f}"
        if self.unit == "ms":
            return f"{self.value:.2f}" if self.value < 10 else f"{self.value:.1f}"
        if abs(self.value) >= 100:
            return f"{self.value:,.0f}"
        return f"{self.value:.2f}"


@dataclass
class Skipped:
    """A benchmark that did not run, and why."""

    section: str
    label: str
    reason: str


@dataclass(frozen=True)
class Ratio:
    """A printed ratio of two measurements, such as taskgate against tuned raw arq."""

    label: str
    numerator: str
    denominator: str
    target: float | None = None  # the fraction the project aims for, reported not asserted


@dataclass(frozen=True)
class Target:
    """A bound the project aims for on one measurement, reported and never asserted."""

    label: str
    key: str
    limit: float
    at_most: bool  # True: the value should not exceed the limit; False: not fall below it


@dataclass
class Results:
    """Everything one `python -m bench` run measured or skipped, in order."""

    measurements: list[Measurement] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)  # py-spy summary lines, when profiled

    def add(self, measurement: Measurement) -> Measurement:
        self.measurements.append(measurement)
        print(
            f"  {measurement.label}: {measurement.formatted_value()} {measurement.unit}"
            + (f"  ({measurement.detail})" if measurement.detail else ""),
            flush=True,
        )
        return measurement

    def skip(self, section: str, label: str, reason: str) -> None:
        self.skipped.append(Skipped(section, label, reason))
        print(f"  SKIPPED {label}: {reason}", flush=True)

    def get(self, key: str) -> Measurement | None:
        for measurement in self.measurements:
            if measurement.key == key:
                return measurement
        return None

    def target_lines(self, targets: list[Target]) -> list[str]:
        lines = []
        for target in targets:
            measurement = self.get(target.key)
            bound = f"{'at most' if target.at_most else 'at least'} {target.limit:g}"
            if measurement is None:
                lines.append(f"target {target.label}: {bound}, not measured in this run")
                continue
            met = (
                measurement.value <= target.limit
                if target.at_most
                else (measurement.value >= target.limit)
            )
            lines.append(
                f"target {target.label}: {measurement.formatted_value()} {measurement.unit}, "
                f"{bound}, {'met' if met else 'not met'}"
            )
        return lines

    def ratio_lines(self, ratios: list[Ratio]) -> list[str]:
        """Format each ratio whose two measurements exist; name the missing ones."""
        lines = []
        for ratio in ratios:
            numerator = self.get(ratio.numerator)
            denominator = self.get(ratio.denominator)
            if numerator is None or denominator is None or denominator.value == 0:
                lines.append(f"ratio {ratio.label}: not measured in this run")
                continue
            value = numerator.value / denominator.value
            digits = 2 if value >= 0.1 else 3
            line = (
                f"ratio {ratio.label}: {value:.{digits}f} "
                f"({numerator.formatted_value()} / {denominator.formatted_value()} "
                f"{denominator.unit})"
            )
            if ratio.target is not None:
                verdict = "met" if value >= ratio.target else "not met"
                line += f"; target {ratio.target:.2f}, {verdict}"
            lines.append(line)
        return lines
