using System.Collections.Concurrent;

namespace Ferry.Host;

/// <summary>The VMs of this host by name. A name is taken while a VM lives here (running, paused, incoming...).</summary>
public sealed class VmRegistry : IDisposable
{
    private readonly ConcurrentDictionary<string, VmInstance> _vms = new();
    private readonly object _lock = new();

    public bool NameTaken(string name) => _vms.TryGetValue(name, out VmInstance? vm) && vm.HoldsName;

    /// <summary>Adds a VM, replacing a record of one that left (migrated or failed) under the same name.</summary>
    public bool TryAdd(VmInstance vm)
    {
        lock (_lock)
        {
            if (_vms.TryGetValue(vm.Name, out VmInstance? old))
            {
                if (old.HoldsName)
                {
                    return false;
                }

                old.Dispose();
            }

            _vms[vm.Name] = vm;
            return true;
        }
    }

    public VmInstance Get(string name)
        => _vms.TryGetValue(name, out VmInstance? vm) ? vm : throw new ApiException(404, $"no VM named '{name}' on this host");

    public IReadOnlyList<VmInstance> All() => [.. _vms.Values.OrderBy(v => v.Name, StringComparer.Ordinal)];

    /// <summary>The operator removes a VM: refused (<see cref="VmStateException"/>) while it runs or a migration holds it.</summary>
    public void Remove(string name)
    {
        lock (_lock)
        {
            VmInstance vm = Get(name);
            vm.CheckRemovable();
            _vms.TryRemove(name, out _);
            vm.Dispose();
        }
    }

    /// <summary>An incoming VM whose migration failed: the source keeps (or resumed) the VM, so drop this copy.</summary>
    public void RemoveFailed(VmInstance vm)
    {
        lock (_lock)
        {
            if (_vms.TryGetValue(vm.Name, out VmInstance? current) && ReferenceEquals(current, vm))
            {
                _vms.TryRemove(vm.Name, out _);
            }
        }

        vm.Dispose();
    }

    public void Dispose()
    {
        foreach (VmInstance vm in _vms.Values)
        {
            vm.Dispose();
        }

        _vms.Clear();
    }
}
