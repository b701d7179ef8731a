using System.Globalization;
using Ferry.Migration.Metrics;
using ScottPlot;
using ScottPlot.Plottables;
using SkiaSharp;

namespace Ferry.Cli.Bench;

/// <summary>
/// The PNG plots of a `ferry bench` run: one grouped bar chart per metric (workloads on x, one bar
/// per strategy, median over the repeats with min..max error bars) and one three-panel timeline
/// per Ferry migration (bytes/s sent, network faults/s, guest instructions/s, pause shaded).
/// </summary>
public static class BenchPlots
{
    public const int BarWidth = 1000;
    public const int BarHeight = 600;
    public const int TimelineWidth = 1000;
    public const int TimelineHeight = 800;

    /// <summary>Known strategies in the order they are drawn, each with its colour in every chart.</summary>
    private static readonly (string Name, string Hex)[] KnownStrategies =
    [
        ("precopy", "#1F77B4"),
        ("postcopy", "#FF7F0E"),
        ("hybrid", "#2CA02C"),
        ("hybrid-pass", "#17BECF"),
        ("auto", "#D62728"),
        ("precopy-ac", "#AEC7E8"),
        ("precopy-delta", "#FFBB78"),
        ("precopy-ac-delta", "#98DF8A"),
        ("qemu-precopy", "#9467BD"),
        ("qemu-postcopy", "#8C564B"),
        ("qemu-postcopy-preempt", "#E377C2"),
    ];

    private static readonly string[] SpareColours = ["#7F7F7F", "#BCBD22", "#D62728"];

    private static readonly Color FailColour = Color.FromHex("#C00000");

    private sealed record Metric(string File, string Title, string Unit, Func<BenchRun, double?> Value, bool LogWhenSpread);

    private static readonly Metric[] Metrics =
    [
        new("bars-total-time.png", "Total migration time", "ms", r => r.TotalTimeMs, false),
        new("bars-downtime.png", "Downtime", "ms", r => r.DowntimeMs, true),
        new("bars-bytes.png", "Bytes on the wire", "MiB", r => r.BytesOnWire / 1048576.0, false),
        new("bars-faults.png", "Network faults", "count", r => r.NetworkFaults, false),
        new("bars-stall.png", "Fault stall (total)", "ms", r => r.FaultStallMs, false),
        new("bars-slowdown.png", "Guest slowdown during migration", "%", r => r.Slowdown * 100, false),
        new("bars-resident.png", "Time until fully resident after resume", "ms", r => r.TimeToFullyResidentMs, false),
        new("bars-stall-per-fault.png", "Stall per network fault (QEMU: blocktime per request)", "µs", r => r.StallPerFaultMs * 1000, true),
    ];

    /// <summary>Writes every plot into <paramref name="directory"/> and returns the files written.</summary>
    public static IReadOnlyList<string> Write(BenchResults results, string directory)
    {
        ArgumentNullException.ThrowIfNull(results);
        Directory.CreateDirectory(directory);
        var written = new List<string>();
        List<string> workloads = Workloads(results);
        Dictionary<string, Color> colours = Colours(results);
        string font = FontName();
        foreach (Metric m in Metrics)
        {
            string path = Path.Combine(directory, m.File);
            WriteBars(results, workloads, colours, font, m, path);
            written.Add(path);
        }

        foreach (BenchRun run in results.Runs
                     .Where(r => r.Report is { Timeline.Points.Count: >= 2 })
                     .GroupBy(r => (r.Workload, r.Strategy))
                     .Select(g => g.OrderBy(r => r.Repeat).First()))
        {
            string path = Path.Combine(directory, $"timeline-{Safe(run.Workload)}-{Safe(run.Strategy)}.png");
            WriteTimeline(results, run, colours.GetValueOrDefault(run.Strategy, Color.FromHex("#1F77B4")), font, path);
            written.Add(path);
        }

        foreach (string workload in workloads)
        {
            List<BenchRun> runs = [.. results.Runs
                .Where(r => r.Workload == workload && r.Report is { Timeline.Points.Count: >= 2 })
                .GroupBy(r => r.Strategy)
                .Select(g => g.OrderBy(r => r.Repeat).First())];
            if (runs.Count > 0)
            {
                string path = Path.Combine(directory, $"guest-speed-{Safe(workload)}.png");
                WriteGuestSpeed(results, workload, runs, colours, font, path);
                written.Add(path);
            }
        }

        foreach (BenchRun run in results.Runs
                     .Where(r => r.ClientTrace is not null)
                     .GroupBy(r => (r.Workload, r.Strategy))
                     .Select(g => g.OrderBy(r => r.Repeat).First()))
        {
            string path = Path.Combine(directory, $"client-latency-{Safe(run.Workload)}-{Safe(run.Strategy)}.png");
            WriteClientLatency(run, colours.GetValueOrDefault(run.Strategy, Color.FromHex("#1F77B4")), font, path);
            written.Add(path);
        }

        return written;
    }

    // ----------------------------------------------------------------------------------------
    // The kvserver's client through the move: every request's latency by the time it was sent

    private static void WriteClientLatency(BenchRun run, Color colour, string font, string path)
    {
        ClientTrace trace = run.ClientTrace!;
        double zero = trace.MigrationStartMs;
        var answered = trace.Client.Samples.Where(x => x.Answered && !x.Failed).ToList();
        var failed = trace.Client.Samples.Where(x => x.Failed).ToList();
        double yMax = answered.Select(x => x.LatencyMs).DefaultIfEmpty(1).Max() * 1.15;

        using var plot = new Plot();
        Style(plot, font);
        if (trace.PauseMs is double pause && trace.ResumeMs is double resume)
        {
            HorizontalSpan span = plot.Add.HorizontalSpan((pause - zero) / 1000, (resume - zero) / 1000);
            span.FillColor = FailColour.WithAlpha(0.25);
            span.LineWidth = 0;
            span.LegendText = $"switchover (downtime {Number(run.DowntimeMs ?? 0)} ms)";
        }

        foreach (double at in new[] { 0.0, (trace.MigrationEndMs - zero) / 1000 })
        {
            VerticalLine v = plot.Add.VerticalLine(at, 1, Colors.DimGray);
            v.LinePattern = LinePattern.Dashed;
            v.LegendText = at == 0 ? "migration: start, completion" : "";
        }

        Scatter ok = plot.Add.ScatterPoints(answered.Select(x => (x.SentMs - zero) / 1000).ToArray(), answered.Select(x => x.LatencyMs).ToArray(), colour);
        ok.MarkerSize = 3;
        ok.LegendText = "request latency";
        if (failed.Count > 0)
        {
            Scatter bad = plot.Add.ScatterPoints(failed.Select(x => (x.SentMs - zero) / 1000).ToArray(), failed.Select(_ => yMax).ToArray(), FailColour);
            bad.MarkerSize = 5;
            bad.MarkerShape = MarkerShape.Cross;
            bad.LegendText = $"failed ({failed.Count})";
        }

        plot.Axes.SetLimitsY(0, yMax);
        plot.XLabel("s from the migration's start (requests by the time they were sent)", 14);
        plot.YLabel("latency (ms)", 14);
        plot.Title($"Client latency through the move: {run.Workload} · {run.Strategy} · outage {Number(run.ClientOutageMs ?? 0)} ms, {run.ClientFailedRequests ?? 0} failed", 16);
        plot.ShowLegend(Alignment.UpperRight);
        plot.SavePng(path, TimelineWidth, BarHeight);
    }

    // ----------------------------------------------------------------------------------------
    // Guest speed through the move, every strategy on one time axis (0 = the pause)

    private static void WriteGuestSpeed(BenchResults results, string workload, List<BenchRun> runs, Dictionary<string, Color> colours, string font, string path)
    {
        using var plot = new Plot();
        Style(plot, font);
        double xMin = 0, xMax = 0, yMax = 0;
        foreach (BenchRun run in runs.OrderBy(r => Strategies(results).IndexOf(r.Strategy)))
        {
            TimelineReport tl = run.Report!.Timeline;
            double zero = tl.PauseAtMs;
            List<TimelinePoint> points = Thin(tl.Points);
            if (points.Count < 2)
            {
                continue;
            }

            double[] xs = [.. points.Skip(1).Select((p, i) => ((p.Ms + points[i].Ms) / 2) - zero)];
            int[] phase = [.. points.Skip(1).Select((p, i) => points[i].Ms < tl.PauseAtMs ? 0 : points[i].Ms < tl.ResumeAtMs ? 1 : 2)];
            double[] mips = [.. Smooth(Rates(points, p => p.Instructions), phase, 5).Select(v => v / 1e6)];
            Scatter line = plot.Add.ScatterLine(xs, mips, colours.GetValueOrDefault(run.Strategy, Color.FromHex("#1F77B4")));
            line.LineWidth = 2;
            line.LegendText = run.Strategy;
            xMin = Math.Min(xMin, xs.Min());
            xMax = Math.Max(xMax, xs.Max());
            yMax = Math.Max(yMax, mips.Where(double.IsFinite).DefaultIfEmpty(0).Max());
        }

        VerticalLine pause = plot.Add.VerticalLine(0, 1, FailColour.WithAlpha(0.6));
        pause.LinePattern = LinePattern.Dashed;
        // A pre-copy that ran for tens of seconds would squeeze everything after the pause into a
        // sliver: before the pause, show at most twice what follows it (and at least a second).
        double shownBefore = Math.Min(-xMin, Math.Max(2 * xMax, 1000));
        plot.Axes.SetLimitsX(-shownBefore, xMax);
        plot.Axes.SetLimitsY(0, yMax > 0 ? yMax * 1.15 : 1);
        plot.XLabel(shownBefore < -xMin ? $"ms from the pause (from {-shownBefore:N0} ms; the longest live phase began at {xMin:N0})" : "ms from the pause", 14);
        plot.YLabel("guest MIPS", 14);
        plot.Title($"Guest speed through the move: {workload} · link {Bandwidth(results.BandwidthBitsPerSecond)}", 16);
        plot.ShowLegend(Alignment.LowerRight);
        plot.SavePng(path, TimelineWidth, BarHeight);
    }

    // ----------------------------------------------------------------------------------------
    // Bar charts

    /// <summary>A (workload, strategy) cell of a chart.</summary>
    private sealed record Cell(int Group, string Strategy, double[] Values, List<BenchRun> Runs, double[] UnfinishedValues);

    private static void WriteBars(BenchResults results, List<string> workloads, Dictionary<string, Color> colours, string font, Metric m, string path)
    {
        List<string> strategies = Strategies(results);
        var cells = new List<Cell>();
        var missing = new List<(string Strategy, string Workload, string Reason)>();
        for (int g = 0; g < workloads.Count; g++)
        {
            foreach (string s in strategies)
            {
                List<BenchRun> runs = [.. results.Runs.Where(r => r.Workload == workloads[g] && r.Strategy == s)];
                if (runs.Count == 0)
                {
                    continue;
                }

                List<BenchRun> unfinished = [.. runs.Where(r => !Finished(r))];
                double[] values = [.. runs.Where(Finished).Select(m.Value).OfType<double>().Where(double.IsFinite).Order()];
                double[] unfinishedValues = [.. unfinished.Select(m.Value).OfType<double>().Where(double.IsFinite).Order()];
                if (values.Length == 0 && unfinished.Count == 0)
                {
                    // Finished, but this figure was not measured for this strategy.
                    missing.Add((s, workloads[g], MissingReason(s, m)));
                    continue;
                }

                cells.Add(new Cell(g, s, values, runs, unfinishedValues));
            }
        }

        using var plot = new Plot();
        Style(plot, font);
        List<string> shown = [.. strategies.Where(s => cells.Any(c => c.Strategy == s))];
        double slot = 0.8 / Math.Max(1, shown.Count);

        double[] all = [.. cells.SelectMany(c => c.Values.Concat(c.UnfinishedValues))];
        double[] positive = [.. all.Where(v => v > 0)];
        bool log = m.LogWhenSpread && positive.Length == all.Length && positive.Length > 0 && positive.Max() / positive.Min() >= 20;
        double floor = log ? Math.Floor(Math.Log10(positive.Min()) - 0.15) : 0;
        Func<double, double> y = log ? v => Math.Log10(Math.Max(v, Math.Pow(10, floor))) : v => v;
        double top = all.Length == 0 ? 1 : all.Max(y);
        double bottom = all.Length == 0 ? 0 : Math.Min(floor, all.Min(y));
        if (top <= bottom)
        {
            top = bottom + 1;
        }

        if (!log && bottom < 0)
        {
            bottom -= (top - bottom) * 0.05;
        }

        // Bars rise from zero (linear; a negative slowdown goes below it) or from the decade below the smallest (log).
        double baseline = log ? bottom : 0;
        double stub = baseline + ((top - bottom) * 0.12);
        var errX = new List<double>();
        var errY = new List<double>();
        var errUp = new List<double>();
        var errDown = new List<double>();
        var labels = new List<(double X, double Y, string Text, Color Colour)>();
        var bars = new List<Bar>();
        bool anyUnfinished = false;
        foreach (Cell c in cells)
        {
            double x = c.Group + ((shown.IndexOf(c.Strategy) - ((shown.Count - 1) / 2.0)) * slot);
            Color colour = colours[c.Strategy];
            string? status = Status(c);
            if (c.Values.Length > 0)
            {
                double median = Median(c.Values);
                bars.Add(new Bar
                {
                    Position = x,
                    Value = y(median),
                    ValueBase = baseline,
                    Size = slot * 0.9,
                    FillColor = colour,
                    LineWidth = 0,
                });
                double hi = Math.Max(y(c.Values[^1]), baseline);
                if (c.Values.Length > 1)
                {
                    errX.Add(x);
                    errY.Add(y(median));
                    errUp.Add(y(c.Values[^1]) - y(median));
                    errDown.Add(y(median) - y(c.Values[0]));
                }

                labels.Add((x, hi, status is null ? Number(median) : $"{Number(median)} ({status})", status is null ? Colors.Black : FailColour));
            }
            else
            {
                // Nothing finished: a hatched, outlined bar (at the unfinished runs' figure when they have one).
                anyUnfinished = true;
                double h = c.UnfinishedValues.Length > 0 ? y(Median(c.UnfinishedValues)) : stub;
                bars.Add(new Bar
                {
                    Position = x,
                    Value = Math.Max(h, stub),
                    ValueBase = baseline,
                    Size = slot * 0.9,
                    FillColor = Colors.White,
                    FillHatch = new ScottPlot.Hatches.Striped(ScottPlot.Hatches.StripeDirection.DiagonalUp),
                    FillHatchColor = colour.WithAlpha(0.8),
                    LineColor = colour,
                    LineWidth = 2,
                });
                labels.Add((x, Math.Max(h, stub), status ?? "did not finish", FailColour));
            }
        }

        if (bars.Count > 0)
        {
            plot.Add.Bars(bars);
        }

        if (errX.Count > 0)
        {
            ErrorBar err = plot.Add.ErrorBar(errX, errY, errUp);
            err.YErrorNegative = errDown;
            err.LineWidth = 1.5f;
            err.CapSize = 6;
            err.Color = Colors.Black;
        }

        foreach ((double x, double ly, string text, Color colour) in labels)
        {
            Text t = plot.Add.Text(text, x, ly);
            t.LabelFontSize = 11;
            t.LabelFontColor = colour;
            t.LabelRotation = -90;
            t.LabelAlignment = Alignment.MiddleLeft;
            t.OffsetY = -4;
            t.LabelFontName = font;
        }

        // Headroom for the vertical labels above the bars: a label of n characters needs about
        // 7n + 12 pixels of the ~440 the data area has.
        double range = (top - bottom) * 1.05;
        foreach ((double _, double ly, string text, Color _) in labels)
        {
            double f = Math.Min(0.7, ((7.0 * text.Length) + 12) / 440);
            range = Math.Max(range, (ly - bottom) / (1 - f));
        }

        plot.Axes.SetLimitsX(-0.5, Math.Max(1, workloads.Count) - 0.5);
        plot.Axes.SetLimitsY(bottom, bottom + range);
        plot.Axes.Bottom.SetTicks([.. Enumerable.Range(0, workloads.Count).Select(i => (double)i)], [.. workloads]);
        plot.Axes.Bottom.MajorTickStyle.Length = 0;
        plot.Grid.XAxisStyle.IsVisible = false;
        if (log)
        {
            plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
            {
                MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
                IntegerTicksOnly = true,
                LabelFormatter = v => Math.Pow(10, v).ToString("#,0.###", CultureInfo.InvariantCulture),
            };
            plot.Grid.YAxisStyle.MinorLineStyle.Width = 0.5f;
            plot.Grid.YAxisStyle.MinorLineStyle.Color = Colors.Black.WithAlpha(0.06);
        }

        int repeats = cells.Count == 0 ? 0 : cells.Max(c => c.Runs.Count);
        string title = $"{m.Title} ({m.Unit}{(log ? ", log scale" : "")}) · link {Bandwidth(results.BandwidthBitsPerSecond)}";
        var notes = new List<string>();
        if (repeats > 0)
        {
            notes.Add(repeats > 1 ? $"median of {repeats} repeats, error bars min..max" : "one run each");
        }

        if (missing.Count > 0)
        {
            notes.Add("not shown: " + MissingNote(results, missing));
        }

        if (cells.Count == 0)
        {
            Annotation none = plot.Add.Annotation(results.Runs.Count == 0 ? "no runs" : "no figures", Alignment.MiddleCenter);
            none.LabelFontSize = 18;
            none.LabelFontColor = Colors.DimGray;
            none.LabelBackgroundColor = Colors.Transparent;
            none.LabelBorderColor = Colors.Transparent;
            none.LabelShadowColor = Colors.Transparent;
            none.LabelFontName = font;
        }

        plot.Title(notes.Count == 0 ? title : title + "\n" + Wrap(string.Join("; ", notes), 105), 16);
        plot.YLabel($"{m.Title} ({m.Unit})", 15);
        plot.XLabel("workload", 15);

        var legendItems = shown.Select(s => new LegendItem { LabelText = s, FillColor = colours[s], LineWidth = 0 }).ToList();
        if (anyUnfinished)
        {
            legendItems.Add(new LegendItem
            {
                LabelText = "no run finished",
                FillColor = Colors.White,
                FillHatch = new ScottPlot.Hatches.Striped(ScottPlot.Hatches.StripeDirection.DiagonalUp),
                FillHatchColor = Colors.Gray,
                OutlineColor = Colors.Gray,
                OutlineWidth = 1,
            });
        }

        // (ScottPlot draws nothing at all when a legend panel has no items.)
        if (legendItems.Count > 0)
        {
            plot.Legend.ManualItems.AddRange(legendItems);
            plot.Legend.FontSize = 13;
            plot.Legend.FontName = font;
            plot.ShowLegend(Edge.Right);
        }
        plot.SavePng(path, BarWidth, BarHeight);
    }

    private static string? Status(Cell c)
    {
        var parts = new List<string>();
        foreach (IGrouping<BenchOutcome, BenchRun> g in c.Runs.Where(r => r.Outcome != BenchOutcome.Completed).GroupBy(r => r.Outcome))
        {
            string what = g.Key switch
            {
                BenchOutcome.DidNotConverge => "did not converge",
                BenchOutcome.ForcedStopAndCopy => "forced stop-and-copy",
                _ => EnumNames.Kebab(g.Key),
            };
            parts.Add(g.Count() == c.Runs.Count ? what : $"{g.Count()}/{c.Runs.Count} {what}");
        }

        return parts.Count == 0 ? null : string.Join(", ", parts);
    }

    /// <summary>
    /// "qemu-precopy, qemu-postcopy (not reported by QEMU); precopy, hybrid on idle (not measured)":
    /// a strategy is named alone when the figure is missing for every workload it ran.
    /// </summary>
    private static string MissingNote(BenchResults results, List<(string Strategy, string Workload, string Reason)> missing)
    {
        var parts = new List<string>();
        foreach (IGrouping<string, (string Strategy, string Workload, string Reason)> reason in missing.GroupBy(x => x.Reason))
        {
            var where = new List<(string Strategy, string Where)>();
            foreach (IGrouping<string, (string Strategy, string Workload, string Reason)> s in reason.GroupBy(x => x.Strategy))
            {
                string[] ran = [.. results.Runs.Where(r => r.Strategy == s.Key).Select(r => r.Workload).Distinct()];
                string[] gone = [.. s.Select(x => x.Workload).Distinct()];
                where.Add((s.Key, gone.Length == ran.Length ? "" : " on " + string.Join("+", gone)));
            }

            parts.Add(string.Join(", ", where.GroupBy(x => x.Where).OrderBy(g => g.Key.Length).Select(g => string.Join(", ", g.Select(x => x.Strategy)) + g.Key)) + $" ({reason.Key})");
        }

        return string.Join("; ", parts);
    }

    /// <summary>The VM ended up running at the destination (a forced stop-and-copy still moved it).</summary>
    private static bool Finished(BenchRun r) => r.Outcome is BenchOutcome.Completed or BenchOutcome.ForcedStopAndCopy;

    private static string MissingReason(string strategy, Metric m)
    {
        bool qemu = strategy.StartsWith("qemu", StringComparison.Ordinal);
        bool faultish = m.File is "bars-faults.png" or "bars-stall.png" or "bars-resident.png";
        return qemu ? "not reported by QEMU" : faultish && strategy == "precopy" ? "n/a for pre-copy" : "not measured";
    }

    // ----------------------------------------------------------------------------------------
    // Timelines

    private static void WriteTimeline(BenchResults results, BenchRun run, Color colour, string font, string path)
    {
        MigrationReport report = run.Report!;
        TimelineReport tl = report.Timeline;
        List<TimelinePoint> points = Thin(tl.Points);

        bool paused = tl.PauseAtMs > 0;
        bool resumed = paused && tl.ResumeAtMs >= tl.PauseAtMs;
        double[] xs = [.. points.Skip(1).Select((p, i) => (p.Ms + points[i].Ms) / 2)];

        // Smooth within live / paused / resumed stretches only, so the pause's edges stay sharp; an
        // interval that straddles the pause or the resume is a stretch of its own.
        int Phase(double ms) => !paused || ms < tl.PauseAtMs ? 0 : !resumed || ms < tl.ResumeAtMs ? 1 : 2;
        int[] phase = [.. points.Skip(1).Select((p, i) => Phase(points[i].Ms) == Phase(p.Ms) ? Phase(p.Ms) : 3 + i)];
        double[] bytes = Smooth(Rates(points, p => p.Bytes), phase, 5);
        double[] faults = Smooth(Rates(points, p => p.Faults), phase, 5);
        double[] instructions = Smooth(Rates(points, p => p.Instructions), phase, 5);
        double end = Math.Max(points[^1].Ms, report.TotalTimeMs);

        using var top = new Plot();
        using var middle = new Plot();
        using var lower = new Plot();
        (Plot Plot, double[] Ys, string Label, double Scale)[] panels =
        [
            (top, bytes, "sent (MiB/s)", 1.0 / 1048576),
            (middle, faults, "network faults/s", 1),
            (lower, instructions, "guest MIPS", 1e-6),
        ];
        foreach ((Plot p, double[] ys, string label, double scale) in panels)
        {
            Style(p, font);
            p.Layout.Fixed(new PixelPadding(95, 25, p == lower ? 55 : 30, p == top ? 95 : 12));
            if (paused)
            {
                HorizontalSpan span = p.Add.HorizontalSpan(tl.PauseAtMs, resumed ? tl.ResumeAtMs : end);
                span.FillColor = FailColour.WithAlpha(0.18);
                span.LineWidth = 0;
                foreach (double at in resumed ? new[] { tl.PauseAtMs, tl.ResumeAtMs } : [tl.PauseAtMs])
                {
                    VerticalLine v = p.Add.VerticalLine(at, 1, FailColour.WithAlpha(0.6));
                    v.LinePattern = LinePattern.Dashed;
                }
            }

            double[] scaled = [.. ys.Select(v => v * scale)];
            if (xs.Length > 0)
            {
                Scatter line = p.Add.ScatterLine(xs, scaled, colour);
                line.LineWidth = 2;
            }

            double max = scaled.Where(double.IsFinite).DefaultIfEmpty(0).Max();
            p.Axes.SetLimitsX(0, end);
            p.Axes.SetLimitsY(0, max > 0 ? max * 1.15 : 1);
            p.YLabel(label, 14);
        }

        if (results.BandwidthBitsPerSecond > 0)
        {
            double cap = results.BandwidthBitsPerSecond / 8.0 / 1048576;
            HorizontalLine h = top.Add.HorizontalLine(cap, 1, Colors.Gray);
            h.LinePattern = LinePattern.Dotted;
            double max = bytes.Where(double.IsFinite).DefaultIfEmpty(0).Max() / 1048576;
            top.Axes.SetLimitsY(0, Math.Max(max, cap) * 1.2);
            Text link = top.Add.Text($"link {Bandwidth(results.BandwidthBitsPerSecond)}", end, cap);
            link.LabelFontSize = 11;
            link.LabelFontColor = Colors.DimGray;
            link.LabelAlignment = Alignment.LowerRight;
            link.OffsetY = -2;
            link.LabelFontName = font;
        }

        if (paused)
        {
            // The label goes beside the pause, on whichever side has more room.
            bool right = tl.PauseAtMs < end / 2;
            string text = resumed ? $"pause: downtime {Number(report.DowntimeMs)} ms" : "paused (never resumed)";
            Text t = top.Add.Text(text, right && resumed ? tl.ResumeAtMs : tl.PauseAtMs, top.Axes.GetLimits().Top);
            t.LabelFontSize = 12;
            t.LabelFontColor = FailColour;
            t.LabelAlignment = right ? Alignment.UpperLeft : Alignment.UpperRight;
            t.OffsetX = right ? 6 : -6;
            t.OffsetY = 4;
            t.LabelFontName = font;
            t.LabelBackgroundColor = Colors.White.WithAlpha(0.8);
            if (resumed)
            {
                var sides = new List<(string, double, Alignment, float)>();
                if (tl.PauseAtMs > end * 0.1)
                {
                    sides.Add(("source", tl.PauseAtMs, Alignment.UpperRight, -6f));
                }

                if (end - tl.ResumeAtMs > end * 0.12)
                {
                    sides.Add(("destination", tl.ResumeAtMs, Alignment.UpperLeft, 6f));
                }

                foreach ((string name, double at, Alignment a, float dx) in sides)
                {
                    Text label = lower.Add.Text(name, at, lower.Axes.GetLimits().Top);
                    label.LabelFontSize = 11;
                    label.LabelFontColor = Colors.DimGray;
                    label.LabelAlignment = a;
                    label.OffsetX = dx;
                    label.OffsetY = 4;
                    label.LabelFontName = font;
                }
            }
        }

        if (faults.All(f => !(f > 0)))
        {
            Annotation none = middle.Add.Annotation("no network faults", Alignment.MiddleCenter);
            none.LabelFontSize = 14;
            none.LabelFontColor = Colors.DimGray;
            none.LabelBackgroundColor = Colors.Transparent;
            none.LabelBorderColor = Colors.Transparent;
            none.LabelShadowColor = Colors.Transparent;
            none.LabelFontName = font;
        }

        lower.XLabel("ms since migration start (source clock)", 14);
        string outcome = run.Outcome == BenchOutcome.Completed ? "" : $" [{EnumNames.Kebab(run.Outcome)}]";
        top.Title($"Timeline: {run.Workload}, {run.Strategy}{outcome} · link {Bandwidth(results.BandwidthBitsPerSecond)}\n"
            + $"total {Number(report.TotalTimeMs)} ms · downtime {Number(report.DowntimeMs)} ms · {Number(report.BytesOnWire / 1048576.0)} MiB sent"
            + $" · {Number(report.NetworkFaults.Count)} network faults\n"
            + "rates smoothed over ~125 ms; after the resume the guest runs at the destination", 15);

        var multiplot = new Multiplot(top);
        multiplot.AddPlot(middle);
        multiplot.AddPlot(lower);
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Rows();
        multiplot.SavePng(path, TimelineWidth, TimelineHeight);
    }

    /// <summary>
    /// The samples in time order, one per 5 ms: two samples a fraction of a millisecond apart
    /// (the source's last and the destination's first around the resume) would make a
    /// meaningless rate.
    /// </summary>
    private static List<TimelinePoint> Thin(IEnumerable<TimelinePoint> samples)
    {
        var points = new List<TimelinePoint>();
        foreach (TimelinePoint p in samples.Where(p => double.IsFinite(p.Ms)).OrderBy(p => p.Ms))
        {
            if (points.Count > 0 && p.Ms - points[^1].Ms < 5)
            {
                points[^1] = p;
            }
            else
            {
                points.Add(p);
            }
        }

        return points;
    }

    /// <summary>Per-second rate between consecutive samples of a cumulative counter (NaN where it went backwards).</summary>
    private static double[] Rates(List<TimelinePoint> points, Func<TimelinePoint, double> counter)
    {
        var rates = new double[Math.Max(0, points.Count - 1)];
        for (int i = 1; i < points.Count; i++)
        {
            double dt = (points[i].Ms - points[i - 1].Ms) / 1000;
            double d = counter(points[i]) - counter(points[i - 1]);
            rates[i - 1] = dt > 0 && d >= 0 ? d / dt : double.NaN;
        }

        return rates;
    }

    /// <summary>A centred moving average over <paramref name="window"/> samples of the same phase, skipping NaNs.</summary>
    private static double[] Smooth(double[] values, int[] phase, int window)
    {
        var smoothed = new double[values.Length];
        int half = window / 2;
        for (int i = 0; i < values.Length; i++)
        {
            double sum = 0;
            int n = 0;
            for (int j = Math.Max(0, i - half); j <= Math.Min(values.Length - 1, i + half); j++)
            {
                if (phase[j] == phase[i] && double.IsFinite(values[j]))
                {
                    sum += values[j];
                    n++;
                }
            }

            smoothed[i] = n > 0 ? sum / n : double.NaN;
        }

        return smoothed;
    }

    // ----------------------------------------------------------------------------------------
    // Shared

    private static void Style(Plot plot, string font)
    {
        plot.Font.Set(font);
        plot.Axes.Left.TickLabelStyle.FontSize = 13;
        plot.Axes.Bottom.TickLabelStyle.FontSize = 13;
        plot.Axes.Title.Label.FontSize = 17;
    }

    private static List<string> Workloads(BenchResults results)
    {
        List<string> names = [.. results.Workloads.Select(w => w.Name)];
        names.AddRange(results.Runs.Select(r => r.Workload).Distinct().Where(w => !names.Contains(w)));
        return [.. names.Where(w => results.Runs.Any(r => r.Workload == w))];
    }

    private static List<string> Strategies(BenchResults results)
    {
        List<string> present = [.. results.Runs.Select(r => r.Strategy).Distinct()];
        return [.. KnownStrategies.Select(k => k.Name).Where(present.Contains), .. present.Where(s => KnownStrategies.All(k => k.Name != s)).Order(StringComparer.Ordinal)];
    }

    private static Dictionary<string, Color> Colours(BenchResults results)
    {
        var colours = KnownStrategies.ToDictionary(k => k.Name, k => Color.FromHex(k.Hex));
        int spare = 0;
        foreach (string s in Strategies(results).Where(s => !colours.ContainsKey(s)))
        {
            colours[s] = Color.FromHex(SpareColours[spare++ % SpareColours.Length]);
        }

        return colours;
    }

    private static string FontName()
    {
        string[] families = SKFontManager.Default.FontFamilies.ToArray();
        return new[] { "DejaVu Sans", "Liberation Sans", "Noto Sans", "Arial", "Helvetica" }
            .FirstOrDefault(f => families.Contains(f, StringComparer.OrdinalIgnoreCase)) ?? Fonts.Default;
    }

    private static double Median(double[] sorted)
        => sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;

    private static string Number(double v)
    {
        double a = Math.Abs(v);
        string fmt = a >= 100 || a == 0 ? "#,0" : a >= 10 ? "0.0" : a >= 1 ? "0.00" : "0.###";
        return v.ToString(fmt, CultureInfo.InvariantCulture);
    }

    /// <summary>Breaks <paramref name="text"/> into lines of at most about <paramref name="width"/> characters.</summary>
    private static string Wrap(string text, int width)
    {
        var lines = new List<string>();
        string line = "";
        foreach (string word in text.Split(' '))
        {
            if (line.Length > 0 && line.Length + 1 + word.Length > width)
            {
                lines.Add(line);
                line = word;
            }
            else
            {
                line = line.Length == 0 ? word : line + " " + word;
            }
        }

        lines.Add(line);
        return string.Join("\n", lines);
    }

    private static string Bandwidth(long bitsPerSecond) => bitsPerSecond switch
    {
        <= 0 => "unlimited",
        >= 1_000_000_000 => $"{Number(bitsPerSecond / 1e9)} Gbit/s",
        >= 1_000_000 => $"{Number(bitsPerSecond / 1e6)} Mbit/s",
        _ => $"{Number(bitsPerSecond / 1e3)} kbit/s",
    };

    private static string Safe(string name)
        => new([.. name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_')]);
}
