using System.Net;
using System.Net.Sockets;
using System.Text;
using Ferry.Cli.Client;

namespace Ferry.Cli.Tests;

/// <summary>
/// <see cref="KvClient"/> against an in-process kvserver (<see cref="ScriptedKvServer"/>: the
/// guest's protocol, with a scripted pause, errors and a dropped connection), and its statistics
/// on hand-made samples.
/// </summary>
public sealed class KvClientTests
{
    private static KvClientOptions Options(ScriptedKvServer server, double rate, int connections, double seconds)
        => new(server.EndPoint, rate, connections, TimeSpan.FromSeconds(seconds)) { DrainTimeout = TimeSpan.FromSeconds(3) };

    [Fact]
    public async Task A_healthy_server_answers_every_request_correctly()
    {
        await using var server = ScriptedKvServer.Start();
        KvClientResult r = await KvClient.RunAsync(Options(server, rate: 400, connections: 4, seconds: 1), CancellationToken.None);

        Assert.Equal(400, r.Samples.Count);                 // the schedule, not the replies, sets the count
        Assert.Equal(0, r.Failed);
        Assert.Equal(0, r.BrokenConnections);
        Assert.All(r.Samples, s => Assert.True(s.Answered));
        Assert.Equal(400, server.Requests);
        Assert.Equal(4, r.Samples.Select(s => s.Connection).Distinct().Count());
        Assert.Equal(40, r.Samples.Count(s => s.Kind == KvRequestKind.Put));   // one in ten
        Assert.True(server.Gets > 0 && server.Hits > 0, "GETs after PUTs found their values");
    }

    [Fact]
    public async Task A_pause_in_the_server_is_the_longest_gap_and_shows_as_latency_not_as_fewer_requests()
    {
        await using var server = ScriptedKvServer.Start();
        var pause = TimeSpan.FromMilliseconds(500);
        Task client = Task.CompletedTask;
        KvClientResult? result = null;
        client = Task.Run(async () => result = await KvClient.RunAsync(Options(server, rate: 200, connections: 2, seconds: 2), CancellationToken.None));
        await server.WaitForRequestsAsync(100);             // about half a second in
        await server.PauseAsync(pause);
        await client;
        KvClientResult r = result!;

        Assert.Equal(400, r.Samples.Count);                 // open loop: the pause took no request away
        Assert.Equal(0, r.Failed);

        // No reply arrives while the server is paused (replies already on their way when it began
        // may land in its first milliseconds), so the longest gap is at least the pause. (Where it
        // is is not asserted: on a loaded machine the client itself can stall longer elsewhere.)
        double pausedAt = r.MsSinceStart(server.PausedAt), resumedAt = pausedAt + pause.TotalMilliseconds;
        Assert.DoesNotContain(r.Samples, s => s.RepliedMs > pausedAt + 5 && s.RepliedMs < resumedAt - 5);
        Assert.True(r.LongestGap.Ms >= pause.TotalMilliseconds - 10, $"longest gap {r.LongestGap.Ms} ms");

        // The requests sent during the pause went out on time and waited for its end.
        KvSample[] inPause = [.. r.Samples.Where(s => s.SentMs > pausedAt + 5 && s.SentMs < resumedAt - 50)];
        Assert.NotEmpty(inPause);
        Assert.All(inPause, s => Assert.True(s.RepliedMs >= resumedAt - 5, $"sent at {s.SentMs} ms, answered at {s.RepliedMs} ms, the pause ended at {resumedAt} ms"));
        Assert.True(r.Phases(pausedAt, resumedAt).During!.P50 > 50);
    }

    [Fact]
    public async Task Lost_writes_are_failed_requests()
    {
        await using var server = ScriptedKvServer.Start(forgetPuts: true);
        KvClientResult r = await KvClient.RunAsync(Options(server, rate: 200, connections: 2, seconds: 0.5) with { KeysPerConnection = 5 }, CancellationToken.None);

        // Each connection's first GET of a key it has PUT must see the value: the server forgot it.
        Assert.True(r.Failed > 0);
        Assert.Contains("expected 'VALUE", r.FirstError, StringComparison.Ordinal);
        Assert.Equal(0, r.BrokenConnections);
        Assert.All(r.Samples.Where(s => s.Kind == KvRequestKind.Put), s => Assert.False(s.Failed));
    }

    [Fact]
    public async Task A_connection_the_server_drops_fails_its_remaining_requests_and_is_not_reopened()
    {
        await using var server = ScriptedKvServer.Start(dropConnectionAfter: 20);
        KvClientResult r = await KvClient.RunAsync(Options(server, rate: 200, connections: 2, seconds: 1), CancellationToken.None);

        Assert.Equal(200, r.Samples.Count);
        Assert.Equal(1, r.BrokenConnections);
        Assert.Equal(2, server.Accepted);                  // no reconnect
        int dropped = r.Samples.First(s => s.Failed).Connection;
        Assert.All(r.Samples.Where(s => s.Connection != dropped), s => Assert.False(s.Failed));
        Assert.True(r.Samples.Count(s => s.Connection == dropped && s.Failed) >= 100 - 21);
        Assert.Contains($"connection {dropped}", r.FirstError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task No_server_is_a_clear_error()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var ep = (IPEndPoint)listener.LocalEndpoint;
        listener.Stop();
        IOException e = await Assert.ThrowsAsync<IOException>(() => KvClient.RunAsync(new KvClientOptions(ep, 100, 1, TimeSpan.FromSeconds(1)), CancellationToken.None));
        Assert.StartsWith($"could not connect to {ep}: ", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0, 1, 1.0)]
    [InlineData(-5, 1, 1.0)]
    [InlineData(100, 0, 1.0)]
    [InlineData(100, 1, 0.0)]
    public void Bad_options_are_refused(double rate, int connections, double seconds)
        => Assert.Throws<ArgumentException>(() => new KvClientOptions(new IPEndPoint(IPAddress.Loopback, 7000), rate, connections, TimeSpan.FromSeconds(seconds)).Validate());

    [Theory]
    [InlineData("10.77.0.2")]
    [InlineData("nowhere:7000")]
    [InlineData("10.77.0.2:0")]
    public void A_bad_target_is_one_line(string target)
        => Assert.Contains("is not ADDR:PORT", Assert.Throws<CliException>(() => ClientCommand.ParseTarget(target)).Message, StringComparison.Ordinal);

    // ---- statistics on hand-made samples (no timing involved)

    private static KvSample S(double sentMs, double? latencyMs, string? error = null)
        => new(sentMs, sentMs, latencyMs ?? double.NaN, 0, KvRequestKind.Get, error);

    private static KvClientResult Result(params KvSample[] samples)
        => new(new KvClientOptions(new IPEndPoint(IPAddress.Loopback, 7000), 1000, 1, TimeSpan.FromSeconds(1)) { DrainTimeout = TimeSpan.FromMilliseconds(100) },
            DateTimeOffset.UnixEpoch, samples, 0);

    [Fact]
    public void The_longest_gap_is_between_reply_arrivals()
    {
        // Replies at 1, 2, 3, then requests sent at 3..6 all answered at 50 (an outage), then 51.
        KvClientResult r = Result(S(0, 1), S(1, 1), S(2, 1), S(3, 47), S(4, 46), S(5, 45), S(6, 44), S(50, 1));
        Assert.Equal(new ReplyGap(47, 3), r.LongestGap);
        Assert.Equal(0, r.Failed);
        Assert.Equal(8, r.Latency!.Requests);
        Assert.Equal(1, r.Latency.P50);   // nearest rank: the 4th of 8 sorted
        Assert.Equal(47, r.Latency.P99);
    }

    [Fact]
    public void The_gap_within_a_window_ignores_longer_gaps_outside_it()
    {
        // A 40 ms gap at 10..50 (a host hiccup), then a 20 ms one at 60..80 (the move, 55..85).
        KvClientResult r = Result(S(0, 10), S(40, 10), S(55, 5), S(60, 20), S(80, 1));
        Assert.Equal(new ReplyGap(40, 10), r.LongestGap);
        Assert.Equal(new ReplyGap(20, 60), r.LongestGapWithin(55, 85));
        Assert.Equal(new ReplyGap(40, 10), r.LongestGapWithin(45, 46));   // the gap that spans the window
    }

    [Fact]
    public void Unanswered_requests_fail_and_the_gap_runs_to_the_end_of_the_drain()
    {
        KvClientResult r = Result(S(0, 1), S(10, 1), S(20, null, "no reply"), S(30, null, "no reply"));
        Assert.Equal(2, r.Failed);
        Assert.Equal("no reply", r.FirstError);
        Assert.Equal(new ReplyGap(30 + 100 - 11, 11), r.LongestGap);
        Assert.Equal(2, r.Latency!.Requests);
    }

    [Fact]
    public void A_server_that_never_answers_has_one_gap_the_whole_run()
    {
        KvClientResult r = Result(S(5, null, "x"), S(6, null, "x"));
        Assert.Equal(new ReplyGap(6 + 100 - 5, 5), r.LongestGap);
        Assert.Null(r.Latency);
    }

    [Fact]
    public void Phases_split_requests_by_send_time()
    {
        KvClientResult r = Result(S(0, 1), S(1, 2), S(10, 30), S(11, 40), S(20, 3), S(21, 4), S(22, 5));
        PhaseLatencies p = r.Phases(10, 20);
        Assert.Equal(new LatencyPercentiles(1, 2, 2), p.Before);
        Assert.Equal(new LatencyPercentiles(30, 40, 2), p.During);
        Assert.Equal(new LatencyPercentiles(4, 5, 3), p.After);
        Assert.Null(Result(S(0, 1)).Phases(10, 20).During);
    }

    [Fact]
    public void Samples_csv_has_a_row_per_request_and_leaves_unanswered_latency_empty()
    {
        string csv = Result(S(0, 1.5), S(1, null, "no \"reply\"")).SamplesCsv();
        string[] lines = csv.TrimEnd('\n').Split('\n');
        Assert.Equal(3, lines.Length);
        Assert.Equal("0,0,1.5,0,get,", lines[1]);
        Assert.Equal("1,1,,0,get,\"no \"\"reply\"\"\"", lines[2]);
    }
}

/// <summary>
/// The guest kvserver's protocol in process, for the client's tests: GET/PUT lines, replies in
/// order; <see cref="PauseAsync"/> stops every reply for a while (the VM's switchover as its
/// clients see it), <c>forgetPuts</c> answers OK without storing, <c>dropConnectionAfter</c>
/// closes the first connection after that many requests.
/// </summary>
internal sealed class ScriptedKvServer : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly bool _forgetPuts;
    private readonly int _dropAfter;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> _store = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _tasks = [];
    private readonly Lock _gate = new();
    private TaskCompletionSource _resumed = CompletedGate();
    private int _requests;
    private int _accepted;

    private ScriptedKvServer(bool forgetPuts, int dropAfter)
    {
        _forgetPuts = forgetPuts;
        _dropAfter = dropAfter;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        _tasks.Add(AcceptAsync());
    }

    public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndpoint;

    public int Requests => Volatile.Read(ref _requests);

    public int Accepted => Volatile.Read(ref _accepted);

    public int Gets { get; private set; }

    public int Hits { get; private set; }

    public DateTimeOffset PausedAt { get; private set; }

    public static ScriptedKvServer Start(bool forgetPuts = false, int dropConnectionAfter = 0) => new(forgetPuts, dropConnectionAfter);

    public async Task WaitForRequestsAsync(int n)
    {
        while (Requests < n)
        {
            await Task.Delay(5);
        }
    }

    /// <summary>No reply goes out for <paramref name="pause"/> (requests are held and answered after it).</summary>
    public async Task PauseAsync(TimeSpan pause)
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            _resumed = gate;
            PausedAt = DateTimeOffset.UtcNow;
        }

        await Task.Delay(pause);
        gate.SetResult();
    }

    private static TaskCompletionSource CompletedGate()
    {
        var t = new TaskCompletionSource();
        t.SetResult();
        return t;
    }

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                TcpClient c = await _listener.AcceptTcpClientAsync(_stop.Token);
                c.NoDelay = true;
                int n = Interlocked.Increment(ref _accepted);
                lock (_gate)
                {
                    _tasks.Add(ServeAsync(c, drop: n == 1 && _dropAfter > 0));
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private async Task ServeAsync(TcpClient client, bool drop)
    {
        using (client)
        {
            try
            {
                using var reader = new StreamReader(client.GetStream(), Encoding.ASCII);
                Stream output = client.GetStream();
                int served = 0;
                while (await reader.ReadLineAsync(_stop.Token) is { } line)
                {
                    Interlocked.Increment(ref _requests);
                    if (drop && ++served > _dropAfter)
                    {
                        client.Client.Close(0);
                        return;
                    }

                    Task resumed;
                    lock (_gate)
                    {
                        resumed = _resumed.Task;
                    }

                    await resumed;
                    await output.WriteAsync(Encoding.ASCII.GetBytes(Answer(line) + "\n"), _stop.Token);
                }
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
            {
            }
        }
    }

    private string Answer(string line)
    {
        string[] w = line.Split(' ');
        if (w is ["GET", var key])
        {
            lock (_gate)
            {
                Gets++;
                if (_store.TryGetValue(key, out string? v))
                {
                    Hits++;
                    return $"VALUE {key} {v}";
                }
            }

            return $"MISSING {key}";
        }

        if (w is ["PUT", var k, var value])
        {
            if (!_forgetPuts)
            {
                _store[k] = value;
            }

            return "OK";
        }

        return "ERROR unknown request";
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        Task[] tasks;
        lock (_gate)
        {
            tasks = [.. _tasks];
        }

        await Task.WhenAll(tasks);
        _stop.Dispose();
    }
}

/// <summary>The client's figures in results.json: written under the documented names and read back.</summary>
public sealed class BenchClientFieldsTests
{
    [Fact]
    public void Client_fields_round_trip_through_results_json()
    {
        var run = new Ferry.Cli.Bench.BenchRun
        {
            Strategy = "postcopy",
            Workload = "linux-kvserver",
            Repeat = 1,
            Outcome = Ferry.Cli.Bench.BenchOutcome.Completed,
            ClientRequests = 9000,
            ClientOutageMs = 49.5,
            ClientLongestGapMs = 51,
            ClientLatencyMs = new PhaseLatencies(new LatencyPercentiles(1, 8, 4000), new LatencyPercentiles(20, 60, 100), null),
            ClientFailedRequests = 0,
            ClientBrokenConnections = 0,
        };
        string json = System.Text.Json.JsonSerializer.Serialize(run, Ferry.Cli.Bench.BenchResults.Json);
        Assert.Contains("\"clientOutageMs\": 49.5", json, StringComparison.Ordinal);
        Assert.Contains("\"clientFailedRequests\": 0", json, StringComparison.Ordinal);
        Assert.Contains("\"during\": {", json, StringComparison.Ordinal);
        Assert.Contains("\"p99\": 60", json, StringComparison.Ordinal);
        Assert.DoesNotContain("clientTrace", json, StringComparison.Ordinal);

        Ferry.Cli.Bench.BenchRun back = System.Text.Json.JsonSerializer.Deserialize<Ferry.Cli.Bench.BenchRun>(json, Ferry.Cli.Bench.BenchResults.Json)!;
        Assert.Equal(run.ClientLatencyMs, back.ClientLatencyMs);
        Assert.Equal(49.5, back.ClientOutageMs);
    }
}
