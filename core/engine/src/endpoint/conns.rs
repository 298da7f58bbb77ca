//! The endpoint's connections and the connection IDs that lead to each: one table, so that
//! an ID never outlives its connection and a connection never loses its IDs.
//!
//! Every datagram is routed by its Destination Connection ID (`route`); the IDs are the
//! ones the endpoint issued for a connection (`add_route`), and all of them go when the
//! connection does (`remove`). Everything else about a connection lives in its [`Conn`].

use crate::map::HashMap;

use super::Conn;

/// Connections by handle, and connection IDs → handle.
///
/// A [`Conn`] is boxed: it holds quiche's connection inline, about 9 KB, and a hash table
/// keeps between one and two times as many slots as entries. Inline, 1,000 idle
/// connections took an 18.7 MB table (heaptrack), nine of those megabytes empty slots,
/// and each growth moved every connection and held the old table and the new at once.
#[derive(Default)]
pub(super) struct ConnTable {
    conns: HashMap<u64, Box<Conn>>,
    /// Invariant: each entry's handle is in `conns`, and that connection's `routes` holds
    /// the entry's key; and the other way round.
    routes: HashMap<Vec<u8>, u64>,
}

impl ConnTable {
    /// A connection.
    pub(super) fn get(&self, handle: u64) -> Option<&Conn> {
        self.conns.get(&handle).map(|conn| &**conn)
    }

    /// A connection, to change.
    pub(super) fn get_mut(&mut self, handle: u64) -> Option<&mut Conn> {
        self.conns.get_mut(&handle).map(|conn| &mut **conn)
    }

    /// Adds a connection; its IDs come with `add_route`. A handle is never reused.
    pub(super) fn insert(&mut self, handle: u64, conn: Conn) {
        debug_assert!(conn.routes.is_empty(), "IDs are added through the table");
        if let Some(old) = self.conns.insert(handle, Box::new(conn)) {
            self.forget_routes(&old);
        }
    }

    /// Removes a connection and every ID that led to it.
    pub(super) fn remove(&mut self, handle: u64) -> Option<Box<Conn>> {
        let conn = self.conns.remove(&handle)?;
        self.forget_routes(&conn);
        #[cfg(debug_assertions)]
        self.check();
        Some(conn)
    }

    /// Datagrams to `cid` go to connection `handle` from now on (an ID another connection
    /// had is taken from it).
    pub(super) fn add_route(&mut self, handle: u64, cid: Vec<u8>) {
        if !self.conns.contains_key(&handle) {
            return;
        }
        if let Some(previous) = self.routes.insert(cid.clone(), handle) {
            if let Some(conn) = self.conns.get_mut(&previous) {
                conn.routes.retain(|route| *route != cid);
            }
        }
        if let Some(conn) = self.conns.get_mut(&handle) {
            conn.routes.push(cid);
        }
        #[cfg(debug_assertions)]
        self.check();
    }

    /// The connection a datagram with Destination Connection ID `dcid` belongs to.
    pub(super) fn route(&self, dcid: &[u8]) -> Option<u64> {
        self.routes.get(dcid).copied()
    }

    /// Every handle.
    pub(super) fn keys(&self) -> impl Iterator<Item = &u64> {
        self.conns.keys()
    }

    /// Every connection.
    pub(super) fn values(&self) -> impl Iterator<Item = &Conn> {
        self.conns.values().map(|conn| &**conn)
    }

    /// How many connections there are.
    pub(super) fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether there are none.
    pub(super) fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    fn forget_routes(&mut self, conn: &Conn) {
        for route in &conn.routes {
            self.routes.remove(route);
        }
    }

    /// Checks the invariant: in debug builds (the tests, the fuzz targets) after every
    /// change.
    #[cfg(debug_assertions)]
    fn check(&self) {
        for (cid, handle) in &self.routes {
            let conn = self
                .conns
                .get(handle)
                .expect("a route to a live connection");
            assert!(conn.routes.contains(cid), "the connection knows its route");
        }
        for (handle, conn) in &self.conns {
            for cid in &conn.routes {
                assert_eq!(self.routes.get(cid), Some(handle), "every ID routes home");
            }
        }
    }
}
