//! Pod IP allocation from a CIDR: lowest free address first, freed on pod deletion, remembered for recycling.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::Ipv4Addr;

use crate::error::SimError;
use crate::store::Key;

const REMEMBERED: usize = 1024;

/// An IPv4 pool.
#[derive(Debug, Clone)]
pub struct Ipam {
    base: u32,
    size: u32,
    used: BTreeMap<u32, Key>,
    by_pod: HashMap<Key, u32>,
    /// Every address below `high` that is free; everything from `high` up is free.
    free_below: BTreeSet<u32>,
    high: u32,
    released: VecDeque<(Key, u32)>,
}

impl Ipam {
    /// A pool for `cidr` (e.g. `10.244.0.0/16`).
    pub fn new(cidr: &str) -> Result<Self, SimError> {
        let bad = || {
            SimError::BadRequest(format!(
                "invalid pod CIDR \"{cidr}\" (want a.b.c.d/n, n in 8..=30)"
            ))
        };
        let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u32 = prefix.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(bad());
        }
        let size = 1u32 << (32 - prefix);
        let base = u32::from(addr) & !(size - 1);
        Ok(Self {
            base,
            size,
            used: BTreeMap::new(),
            by_pod: HashMap::new(),
            free_below: BTreeSet::new(),
            high: base + 1,
            released: VecDeque::new(),
        })
    }

    /// Allocate the lowest free address for a pod.
    pub fn allocate(&mut self, pod: &Key) -> Result<Ipv4Addr, SimError> {
        if let Some(ip) = self.by_pod.get(pod) {
            return Ok(Ipv4Addr::from(*ip));
        }
        let ip = match self.free_below.pop_first() {
            Some(ip) => ip,
            None if self.high < self.base + self.size - 1 => {
                self.high += 1;
                self.high - 1
            }
            None => return Err(SimError::Internal("pod CIDR exhausted".into())),
        };
        self.used.insert(ip, pod.clone());
        self.by_pod.insert(pod.clone(), ip);
        Ok(Ipv4Addr::from(ip))
    }

    /// Claim a specific address for a pod (inside the pool it must be free; outside it is not tracked).
    pub fn claim(&mut self, pod: &Key, ip: &str) -> Result<(), SimError> {
        let addr: Ipv4Addr = ip
            .parse()
            .map_err(|_| SimError::BadRequest(format!("invalid pod IP \"{ip}\"")))?;
        let n = u32::from(addr);
        if n <= self.base || n >= self.base + self.size - 1 {
            return Ok(());
        }
        match self.used.get(&n) {
            Some(owner) if owner != pod => Err(SimError::BadRequest(format!(
                "pod IP {ip} is in use by {}/{}",
                owner.0, owner.1
            ))),
            _ => {
                self.release(pod);
                if n >= self.high {
                    self.free_below.extend(self.high..n);
                    self.high = n + 1;
                } else {
                    self.free_below.remove(&n);
                }
                self.used.insert(n, pod.clone());
                self.by_pod.insert(pod.clone(), n);
                Ok(())
            }
        }
    }

    /// Free a pod's address (remembering it for `recycle_ip`).
    pub fn release(&mut self, pod: &Key) {
        if let Some(ip) = self.by_pod.remove(pod) {
            self.used.remove(&ip);
            self.free_below.insert(ip);
            self.released.push_back((pod.clone(), ip));
            while self.released.len() > REMEMBERED {
                self.released.pop_front();
            }
        }
    }

    /// The address a deleted pod had, if remembered.
    pub fn released_ip(&self, pod: &Key) -> Option<Ipv4Addr> {
        self.released
            .iter()
            .rev()
            .find(|(k, _)| k == pod)
            .map(|(_, ip)| Ipv4Addr::from(*ip))
    }

    /// Addresses in use.
    pub fn in_use(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_and_reuse() {
        let mut ipam = Ipam::new("10.0.0.0/29").unwrap();
        let a = ("ns".to_string(), "a".to_string());
        let b = ("ns".to_string(), "b".to_string());
        assert_eq!(ipam.allocate(&a).unwrap().to_string(), "10.0.0.1");
        assert_eq!(ipam.allocate(&b).unwrap().to_string(), "10.0.0.2");
        ipam.release(&a);
        assert_eq!(ipam.released_ip(&a).unwrap().to_string(), "10.0.0.1");
        let c = ("ns".to_string(), "c".to_string());
        assert_eq!(ipam.allocate(&c).unwrap().to_string(), "10.0.0.1");
        assert!(Ipam::new("10.0.0.0").is_err());
        // Claiming above the high-water mark leaves the gap allocatable, lowest first.
        let d = ("ns".to_string(), "d".to_string());
        ipam.claim(&d, "10.0.0.5").unwrap();
        let e = ("ns".to_string(), "e".to_string());
        assert_eq!(ipam.allocate(&e).unwrap().to_string(), "10.0.0.3");
        assert!(ipam.claim(&e, "10.0.0.5").is_err());
    }
}
